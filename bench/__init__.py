"""`make bench`: seed 001's Sora batch scenario and the wake-on-release hand-off, on the KIE simulator;
the API under load and the worker pipeline's drain (issue 11), each beside a baseline measured in the
same run.

The batch and hand-off scenarios run the real engine in this process (the API through Litestar's test
client, every actor in one Dramatiq worker on the real Redis broker); vendor times are scaled down
(`bench.scale`). The API and pipeline tables run real server and worker processes (`bench.serve`,
`bench.worker`) on loopback. It prints tables and asserts nothing about timings.
"""
