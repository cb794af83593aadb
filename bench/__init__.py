"""`make bench`: seed 001's Sora batch scenario and the wake-on-release hand-off, on the KIE simulator.

The real engine runs in this process (the API through Litestar's test client, every actor in one
Dramatiq worker on the real Redis broker); vendor times are scaled down (`bench.scale`). It prints
tables and asserts nothing about timings.
"""
