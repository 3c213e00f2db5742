"""The HTTP gateway (Starlette): the REST API over the query socket, WebSocket
events, the dashboard page; its authentication, request guard, parameter typing,
JSON and OpenAPI document. Needs the ``[http]`` extra.
"""
