"""The JupyterLab face: a jupyter_server extension serving nb2pipe's REST API and run events.

It parses requests, calls the engine and renders JSON; runs execute in worker processes the
server owns (`nb2pipe run --events`), never in a user's kernel or on the server's event loop.
The routes and the event schema are in jupyter_extension/REST.md.
"""


def _jupyter_server_extension_points():
    from nb2pipe.lab.app import Nb2pipe

    return [{"module": "nb2pipe.lab", "app": Nb2pipe}]
