"""The server extension: `c.Nb2pipe.*` settings, the routes, the run event schema."""

from __future__ import annotations

import os
from pathlib import Path

from jupyter_server.extension.application import ExtensionApp
from traitlets import Bool, Integer, Unicode, default

from nb2pipe.lab.handlers import routes
from nb2pipe.lab.state import LabState, Settings
from nb2pipe.lab.workers import RunManager, WorkerRun

EVENT_SCHEMA_ID = "https://events.nb2pipe.dev/run/v1"
EVENT_SCHEMA = Path(__file__).parent / "schemas" / "run.yaml"
_EVENT_FIELDS = ("status", "step", "attempt", "duration", "cached", "cell_index", "cells", "source_cell", "message")
_EVENT_TYPES = {"status": str, "step": str, "attempt": int, "duration": (int, float), "cached": bool,
                "cell_index": int, "cells": int, "source_cell": int, "message": str}


class Nb2pipe(ExtensionApp):
    """nb2pipe in JupyterLab: pipelines of notebooks, their runs (in worker processes), Kubeflow."""

    name = "nb2pipe"
    load_other_extensions = True

    kfp_host = Unicode(help="Kubeflow Pipelines endpoint that Submit sends runs to (none: Submit is off) "
                            "[default: $KF_PIPELINES_ENDPOINT].").tag(config=True)
    kfp_token_env = Unicode("KF_PIPELINES_TOKEN", help="Environment variable of the server holding the KFP "
                            "bearer token (never taken from a request).").tag(config=True)
    kfp_image = Unicode(None, allow_none=True, help="Image the steps of submitted and exported pipelines run in "
                        "[default: the one `nb2pipe build` tagged for the notebook].").tag(config=True)
    kfp_allow_local_image = Bool(False, help="Submit pipelines whose image names no registry (a kind or minikube "
                                 "cluster sharing this machine's Docker daemon).").tag(config=True)
    executor = Unicode("local", help="Where runs started from Lab execute their steps: 'local' or 'docker'."
                       ).tag(config=True)
    workers = Integer(0, help="Steps a run executes at once (0: the number of CPUs).").tag(config=True)
    store = Unicode(None, allow_none=True, help="One run store for every notebook (relative: to the root "
                    "directory) [default: .nb2pipe/ beside each notebook, or $NB2PIPE_STORE, as the CLI].",
                    ).tag(config=True)
    max_live_runs = Integer(8, help="Runs that may go on at once in this server.").tag(config=True)
    broadcast_events = Bool(True, help="Publish run events on jupyter_server's event bus.").tag(config=True)

    @default("kfp_host")
    def _kfp_host_default(self) -> str:
        return os.environ.get("KF_PIPELINES_ENDPOINT", "")

    def initialize_settings(self) -> None:
        server = self.serverapp
        server.event_logger.register_event_schema(EVENT_SCHEMA)
        settings = Settings(root_dir=str(server.root_dir), kfp_host=self.kfp_host, kfp_token_env=self.kfp_token_env,
                            kfp_image=self.kfp_image, kfp_allow_local_image=self.kfp_allow_local_image,
                            executor=self.executor, workers=self.workers, store=self.store,
                            allow_hidden=bool(getattr(server.contents_manager, "allow_hidden", False)))
        self.lab = LabState(settings, RunManager(self._publish, max_live=self.max_live_runs))

    def initialize_handlers(self) -> None:
        self.handlers.extend(routes(self.lab))

    def _publish(self, run: WorkerRun, event: dict) -> None:
        if not self.broadcast_events:
            return
        data = {"run_id": run.id, "path": run.request.shown, "type": event["type"]}
        for key in _EVENT_FIELDS:  # only what the schema allows, typed as it says (it validates)
            value = event.get(key)
            if key in ("attempt", "cell_index", "cells", "source_cell") and isinstance(value, bool):
                value = None
            data[key] = value if isinstance(value, _EVENT_TYPES[key]) else None
        try:
            self.serverapp.event_logger.emit(schema_id=EVENT_SCHEMA_ID, data=data)
        except Exception:  # a bad event must never stop the watching of a run
            self.log.exception("nb2pipe: could not publish a run event")

    async def stop_extension(self) -> None:
        await self.lab.manager.shutdown()
        self.lab.pool.shutdown(wait=False, cancel_futures=True)
