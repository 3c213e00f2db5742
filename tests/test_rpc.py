"""The one request-reply protocol inside the daemon and to it: the same envelope
on the query socket, the writer's control socket and the scheduler's socket,
and a socket that timed out replaced, so the next request gets its answer."""
from __future__ import annotations

import threading

import pytest
import zmq

from linkband_history import protocol, rpc
from linkband_historyd.writer_client import WriterClient, WriterError


def test_a_request_after_a_timeout_goes_out_on_a_fresh_socket_and_gets_its_answer(tmp_path):
    ctx = zmq.Context()
    endpoint = f"ipc://{tmp_path}/rep.sock"
    server = ctx.socket(zmq.REP)
    server.setsockopt(zmq.LINGER, 0)
    server.bind(endpoint)
    asking = rpc.Requester(ctx, endpoint, timeout=0.2)
    try:
        with pytest.raises(rpc.Timeout, match="no reply from"):
            asking.request("first", {"n": 1})
        assert protocol.decode_request(server.recv()) == ("first", {"n": 1})
        server.send(protocol.encode_reply(protocol.ok(["late"])))    # its asker is gone
        # the stuck REQ socket could not even have sent this one (EFSM)
        answering = threading.Thread(target=lambda: server.send(protocol.encode_reply(
            protocol.ok([protocol.decode_request(server.recv())]))))
        answering.start()
        reply = asking.call("second", {"n": 2}, timeout=30)
        answering.join(30)
        assert reply["rows"] == [["second", {"n": 2}]]
    finally:
        asking.close()
        server.close(0)
        ctx.term()


def test_handlers_answer_by_name_and_turn_errors_into_error_replies():
    handlers = rpc.Handlers()

    @handlers.register("double")
    def double(params):
        return protocol.ok([params["x"] * 2])

    @handlers.register("refuse")
    def refuse(params):
        raise rpc.RpcError("bad_param", "x: no")

    def ask(frame):
        return protocol.decode_reply(handlers.answer(frame, bad_request=(KeyError,)))
    assert ask(protocol.encode_request("double", {"x": 21}))["rows"] == [42]
    assert ask(protocol.encode_request("refuse"))["error"] == {"code": "bad_param", "message": "x: no"}
    assert ask(protocol.encode_request("nope"))["error"]["code"] == "bad_request"
    assert "unknown op 'nope'" in ask(protocol.encode_request("nope"))["error"]["message"]
    assert ask(protocol.encode_request("double", {}))["error"]["code"] == "bad_request"
    assert ask(b"\xc1")["error"]["code"] == "bad_request"                # not msgpack
    with pytest.raises(KeyError):                    # not one of bad_request: the server's own fault
        handlers.answer(protocol.encode_request("double", {}), bad_request=())


def test_the_writers_control_socket_answers_in_the_one_envelope_with_its_error_codes(daemon):
    w = WriterClient(daemon.control, timeout=30)
    try:
        assert w.call("ping")["pid"] == daemon.writer_pid()
        with pytest.raises(WriterError) as exc:
            w.call("no.such.op")
        assert exc.value.code == "op_failed" and "unknown operation" in str(exc.value)
        with pytest.raises(WriterError) as exc:
            w.call("delete", kind="nope", before=0)
        assert exc.value.code == "op_failed" and "unknown kind" in str(exc.value)
    finally:
        w.close()
    ctx = zmq.Context()
    raw = ctx.socket(zmq.REQ)
    raw.setsockopt(zmq.LINGER, 0)
    try:
        raw.connect(daemon.control)
        raw.send(b"\xc1")                             # not msgpack: refused, nothing else lost
        assert raw.poll(30_000)
        reply = protocol.decode_reply(raw.recv())
        assert reply["ok"] is False and reply["error"]["code"] == "bad_request"
    finally:
        raw.close(0)
        ctx.term()
    assert daemon.ask("ping")["ok"]


def test_the_scheduler_socket_starts_jobs_and_names_an_unknown_op(daemon):
    started = daemon.ask("summarize")
    assert started["ok"] and started["rows"][0]["job"] == "summarize"
    jobs = daemon.ask("jobs", id=started["rows"][0]["id"])
    assert jobs["ok"] and jobs["rows"][0]["id"] == started["rows"][0]["id"]
    assert jobs["pid"] in [c.pid for c in daemon.children()]
    scheduler = rpc.Requester(zmq.Context.instance(), f"ipc://{daemon.run_dir}/scheduler.sock", 30)
    try:
        reply = scheduler.request("nope")
        assert reply["error"] == {"code": "bad_request", "message": "unknown op 'nope'"}
        reply = scheduler.request("run", {"job": "nope"})
        assert reply["error"]["code"] == "bad_param" and "job must be one of" in reply["error"]["message"]
    finally:
        scheduler.close()
