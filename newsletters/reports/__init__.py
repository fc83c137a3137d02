"""What happened to a send, and to a newsletter's readers: counts, series and charts.

Reads the rows of editions, bounces and subscriptions (never writes them) and draws the
charts as SVG on the server (pygal); each chart has its numbers in a table beside it.
"""
