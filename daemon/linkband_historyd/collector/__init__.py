"""System metrics (psutil): cpu, memory, disk, network and the SDK's processes,
sampled by a scheduler job and pushed like any SDK process.
"""
