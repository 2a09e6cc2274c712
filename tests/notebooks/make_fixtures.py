"""Generate the fixture notebooks of the core test suite.

Run from anywhere:  python tests/notebooks/make_fixtures.py

Every cell gets a fixed id, so the output is byte-for-byte stable: re-running the script must
leave `git status` clean. Well-formed notebooks are built with nbformat's v4 builders; the v3
notebook and the malformed files are written as raw text/bytes on purpose.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_raw_cell

HERE = Path(__file__).resolve().parent

PYTHON = {
    "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
    "language_info": {"name": "python", "version": "3.11.0"},
}
R_KERNEL = {
    "kernelspec": {"display_name": "R", "language": "R", "name": "ir"},
    "language_info": {"name": "R"},
}


def code(cell_id: str, source: str, *tags: str, outputs=None, execution_count=None):
    cell = new_code_cell(source, id=cell_id)
    if tags:
        cell.metadata["tags"] = list(tags)
    if outputs:
        cell.outputs = outputs
    cell.execution_count = execution_count
    return cell


def md(cell_id: str, source: str, *tags: str):
    cell = new_markdown_cell(source, id=cell_id)
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def raw(cell_id: str, source: str):
    return new_raw_cell(source, id=cell_id)


def notebook(cells, metadata=PYTHON):
    nb = new_notebook(cells=cells, metadata=json.loads(json.dumps(metadata)))
    nbformat.validate(nb)
    return nb


# ----------------------------------------------------------------------------------------------
# Valid notebooks (each has a golden spec in tests/golden/)
# ----------------------------------------------------------------------------------------------


def ml_pipeline():
    """nb2pipe tags: load -> features -> (train_rf || train_lr) -> evaluate with metrics."""
    return notebook([
        md("title", "# Churn model\n\nLoad the data, build features, train two models, compare them."),
        code("setup-imports", "import pandas as pd\n"
             "from sklearn.ensemble import RandomForestClassifier\n"
             "from sklearn.linear_model import LogisticRegression\n"
             "from sklearn.metrics import accuracy_score\n"
             "from sklearn.model_selection import train_test_split", "setup"),
        code("params", 'data_url = "https://example.com/churn.csv"\n'
             "test_size = 0.2\nseed = 42\nn_estimators = 200\n"
             'feature_columns = ["tenure", "monthly_charges", "support_calls"]', "parameters"),
        code("load", "raw = pd.read_csv(data_url)\nraw = raw.dropna()", "step:load", "cpu:1", "memory:2Gi",
             outputs=[nbformat.v4.new_output("stream", name="stdout", text="loaded\n")], execution_count=3),
        code("load-check", "print(raw.shape)\nraw.head()", execution_count=4),
        md("features-md", "## Features"),
        code("features", "import numpy as np\n"
             "X = raw[feature_columns].to_numpy(dtype=np.float64)\n"
             'y = raw["churned"].to_numpy()\n'
             "X_train, X_test, y_train, y_test = train_test_split(\n"
             "    X, y, test_size=test_size, random_state=seed\n)", "step:features"),
        code("train-rf", "model_rf = RandomForestClassifier(n_estimators=n_estimators, random_state=seed)\n"
             "model_rf.fit(X_train, y_train)",
             "step:train_rf", "cpu:4", "memory:8Gi", "retries:2", "timeout:3600"),
        code("train-lr", "model_lr = LogisticRegression(max_iter=1000)\nmodel_lr.fit(X_train, y_train)",
             "step:train_lr", "cache:off"),
        code("evaluate", "models = {\"rf\": model_rf, \"lr\": model_lr}\n"
             "scores = {name: accuracy_score(y_test, m.predict(X_test)) for name, m in models.items()}\n"
             "best = max(scores, key=scores.get)", "step:evaluate", "image:python:3.11-slim"),
        code("metrics", 'accuracy_rf = scores["rf"]\naccuracy_lr = scores["lr"]\n'
             "spread = float(np.std(list(scores.values())))", "metrics"),
        code("explore", "raw.describe()", "skip"),
        raw("notes", "step:not-a-step (raw cells never execute)"),
    ])


def kale_pipeline():
    """Tagged exactly as Kale users do (JupyterLab Kale extension)."""
    return notebook([
        md("intro", "# Titanic survival with Kale tags"),
        code("imports", "import numpy as np\nimport pandas as pd\n"
             "from sklearn.ensemble import RandomForestClassifier", "imports"),
        code("functions", "def clean(frame):\n"
             "    frame = frame.copy()\n"
             '    frame["Age"] = frame["Age"].fillna(frame["Age"].median())\n'
             "    return frame", "functions"),
        code("pipeline-parameters", "N_ESTIMATORS = 100\nMAX_DEPTH = 6\nDATA_PATH = \"data/train.csv\"",
             "pipeline-parameters"),
        code("data-loading", "train_df = pd.read_csv(DATA_PATH)", "block:data-loading"),
        code("preprocess", "train_df = clean(train_df)\n"
             'features = train_df[["Pclass", "Age", "Fare"]].values\n'
             'labels = train_df["Survived"].values', "block:preprocess", "prev:data-loading"),
        code("train", "model = RandomForestClassifier(n_estimators=N_ESTIMATORS, max_depth=MAX_DEPTH)\n"
             "model.fit(features, labels)", "block:train-model", "prev:preprocess",
             "limit:nvidia.com/gpu:1", "limit:memory:4Gi"),
        code("evaluate", "accuracy = model.score(features, labels)\n"
             "n_samples = len(labels)", "block:evaluate", "prev:train-model", "cache:disabled"),
        code("scratch", "train_df.sample(5)", "skip"),
        code("metrics", "accuracy\nn_samples", "pipeline-metrics"),
    ])


def kale_metrics():
    """As Kale's own test notebook for parameters and metrics: its pipeline-metrics cell holds only
    print(name) lines, two of them parameters. Kale reports d1 and d2 from create_matrix (which
    reads them) and sum_result from sum_matrix (which produces it)."""
    return notebook([
        code("imports", "import numpy as np", "imports"),
        code("pipeline-parameters", "d1 = 5\nd2 = 6\nbooltest = True\nstrtest = 'test'", "pipeline-parameters"),
        code("create", "rnd_matrix = np.random.rand(d1, d2)", "limit:nvidia.com/gpu:2", "step:create_matrix"),
        code("anonymous", "print(rnd_matrix.shape)", "block:"),  # Kale's anonymous block: same step
        code("sum", "sum_result = rnd_matrix.sum()", "prev:create_matrix", "step:sum_matrix"),
        code("pipeline-metrics", "print(d1)\nprint(d2)\nprint(sum_result)", "pipeline-metrics"),
    ])


def kale_candies():
    """As Kale's base example: imports, functions and pipeline-parameters cells, and a chain of
    steps each tagged prev: the one before; kid2 and kid3 read what earlier kids took."""
    return notebook([
        md("intro", "## Sharing candies"),
        code("imports", "import random", "imports"),
        code("pipeline-parameters", "CANDIES = 20", "pipeline-parameters"),
        code("functions", "def get_handful(left):\n    if left == 0:\n        print('none left')\n        return 0\n"
             "    taken = random.randint(1, left)\n    print(f'took {taken}')\n    return taken", "functions"),
        code("sack", "print(f'{CANDIES} candies in the sack')", "step:sack"),
        code("kid1", "kid1 = get_handful(CANDIES)", "prev:sack", "step:kid1"),
        code("kid2", "kid2 = get_handful(CANDIES - kid1)", "prev:kid1", "step:kid2"),
        code("kid3", "kid3 = get_handful(CANDIES - kid1 - kid2)", "prev:kid2", "step:kid3"),
    ])


def kale_xgboost():
    """As Kale's XGBoost example: tabular data (a loan book, generated: no network) loaded, one-hot
    encoded into xgboost DMatrix objects, a Booster trained with xgb.train, evaluated; the
    metrics cell prints names, as Kale's does. The DMatrix and Booster cross steps."""
    return notebook([
        md("intro", "# Loan default with XGBoost\n\nKale tags: load the data, preprocess it into DMatrix, "
           "train a Booster, evaluate it."),
        code("imports", "import numpy as np\nimport pandas as pd\nimport xgboost as xgb\n"
             "from sklearn.metrics import accuracy_score, roc_auc_score\n"
             "from sklearn.model_selection import train_test_split", "imports"),
        code("functions", "def make_loans(n_rows, seed):\n"
             "    rng = np.random.default_rng(seed)\n"
             "    income = rng.lognormal(10.5, 0.5, n_rows)\n"
             "    amount = rng.uniform(1_000, 40_000, n_rows)\n"
             "    years = rng.integers(0, 30, n_rows)\n"
             '    purpose = rng.choice(["car", "home", "education", "business"], n_rows)\n'
             "    score = 3 * amount / income - 0.05 * years + (purpose == \"business\") + rng.normal(0, 0.5, n_rows)\n"
             "    frame = pd.DataFrame({\"income\": income, \"amount\": amount, \"years_employed\": years,\n"
             "                          \"purpose\": purpose, \"default\": (score > np.median(score)).astype(int)})\n"
             "    frame.loc[rng.random(n_rows) < 0.05, \"income\"] = np.nan  # missing values, which xgboost handles\n"
             "    return frame", "functions"),
        code("pipeline-parameters", "N_ROWS = 2000\nSEED = 42\nTEST_SIZE = 0.25\nMAX_DEPTH = 4\nETA = 0.3\n"
             "NUM_BOOST_ROUND = 40", "pipeline-parameters"),
        code("loaddata", "loans = make_loans(N_ROWS, SEED)", "block:loaddata"),
        code("peek", "loans.head()", "skip"),
        code("preprocess", 'features = pd.get_dummies(loans.drop(columns="default"), columns=["purpose"],\n'
             "                          dtype=float)\n"
             "x_train, x_test, y_train, y_test = train_test_split(\n"
             '    features, loans["default"], test_size=TEST_SIZE, random_state=SEED)\n'
             "dtrain = xgb.DMatrix(x_train, label=y_train)\n"
             "dtest = xgb.DMatrix(x_test, label=y_test)", "block:preprocess", "prev:loaddata"),
        code("train", 'params = {"objective": "binary:logistic", "eval_metric": "logloss", "max_depth": MAX_DEPTH,\n'
             '          "eta": ETA, "seed": SEED}\n'
             "model = xgb.train(params, dtrain, num_boost_round=NUM_BOOST_ROUND,\n"
             '                  evals=[(dtrain, "train")], verbose_eval=False)', "block:train", "prev:preprocess"),
        code("evaluate", "proba = model.predict(dtest)\n"
             "accuracy = float(accuracy_score(dtest.get_label(), proba > 0.5))\n"
             "auc = float(roc_auc_score(dtest.get_label(), proba))", "block:evaluate", "prev:train"),
        code("metrics", "print(accuracy)\nprint(auc)", "pipeline-metrics"),
    ])


def fanout():
    """1 -> 8 -> 1: a prepare step, eight independent shard steps, one combine step."""
    shards = [
        code(f"shard-{i}", f"result_{i} = score_shard(shards[{i}], threshold)", f"step:shard_{i}")
        for i in range(8)
    ]
    total = " + ".join(f"result_{i}" for i in range(8))
    return notebook([
        code("helpers", "def score_shard(rows, limit):\n"
             "    return sum(1 for r in rows if r > limit)", "setup"),
        code("params", "threshold = 0.5\nn_rows = 8000", "parameters"),
        code("prepare", "import random\nrandom.seed(0)\n"
             "rows = [random.random() for _ in range(n_rows)]\n"
             "shards = [rows[i::8] for i in range(8)]", "step:prepare"),
        *shards,
        code("combine", f"total = {total}\nfraction = total / n_rows", "step:combine"),
    ])


def magics():
    """IPython syntax everywhere: line magics, cell magics, shell escapes and captures."""
    return notebook([
        code("setup", "%matplotlib inline\n%load_ext autoreload\n%autoreload 2\nimport os", "setup"),
        code("fetch", "!echo fetching\nfiles = !ls\n%time sizes = [len(f) for f in files]", "step:fetch"),
        code("env", "%env DATA_DIR=/tmp\n%pip install --quiet tqdm"),
        code("capture", "%%capture captured\nprint(sizes)\nsummary = sum(sizes)", "step:summarise"),
        code("timed", "%%time\ndoubled = summary * 2"),
        code("shell", "%%bash\necho \"no python here\"\nls -la", "step:shell"),
        code("report", "%timeit sum(sizes)\nprint(doubled, captured.stdout, os.sep)", "step:report"),
        code("help", "sizes?"),
    ])


def untagged():
    """No tags on code cells (a markdown tag has no effect): one step named after the notebook."""
    return notebook([
        md("md", "# Quick analysis", "step:intro"),
        code("c1", "import statistics\nvalues = [3, 1, 4, 1, 5, 9, 2, 6]"),
        code("c2", "mean = statistics.mean(values)\nprint(mean)"),
        raw("raw", "not code"),
        code("c3", "squares = [v * v for v in values]"),
    ])


def no_kernelspec():
    """No kernelspec in the metadata: nb2pipe falls back to python3."""
    return notebook([code("only", "answer = 6 * 7\nprint(answer)")], metadata={})


def r_untagged():
    return notebook([
        md("md", "# An R notebook"),
        code("r1", "x <- c(1, 2, 3)\nsummary(x)"),
        code("r2", "plot(x)"),
    ], metadata=R_KERNEL)


def nbclient_tags():
    """nbclient's own tags keep their meaning and travel into the spec."""
    return notebook([
        code("boom", "value = 1\nraise ValueError('expected')", "step:main", "raises-exception"),
        code("slow", "import time\ntime.sleep(3600)", "skip-execution"),
        code("after", "print(value)"),
    ])


# ----------------------------------------------------------------------------------------------
# Invalid notebooks (each triggers specific diagnostics)
# ----------------------------------------------------------------------------------------------


def cycle_after():
    """a -> b -> c by data, and a after:c closes a cycle."""
    return notebook([
        code("a", "x = 1", "step:a", "after:c"),
        code("b", "y = x + 1", "step:b"),
        code("c", "z = y + 1", "step:c"),
    ])


def cycle_data():
    """load (after:train) defines df; train reads df: the cycle closes through a data edge."""
    return notebook([
        code("load", "df = [1, 2, 3]", "step:load", "after:train"),
        code("train", "model = sum(df)", "step:train"),
    ])


def tag_typos():
    return notebook([
        code("c1", "a = 1", "stpe:load"),
        code("c2", "b = 2", "step:load", "aftr:load"),
        code("c3", "c = 3", "paramters"),
        code("c4", "d = 4", "Step:train"),
        code("c5", "e = 5", "metrcs"),
        code("c6", "f = 6", "my-own-tag", "hide-input"),
    ])


def duplicate_steps():
    return notebook([
        code("load-1", "data = [1, 2]", "step:load"),
        code("train", "model = sum(data)", "step:train"),
        code("load-2", "more = [3]", "step:load"),
    ])


def bad_options():
    return notebook([
        code("c1", "a = 1", "step:one", "retries:x"),
        code("c2", "b = a", "step:two", "cpu:lots", "memory:4 gigs"),
        code("c3", "c = b", "step:three", "gpu:1.5", "timeout:never", "cache:maybe"),
        code("c4", "d = c", "step:four", "limit:tpu:1", "retries:50"),
    ])


def bad_parameters():
    return notebook([
        code("params", "learning_rate = 0.1\nepochs = int('5')", "parameters"),
        code("train", "print(learning_rate, epochs)", "step:train"),
    ])


def undefined_names():
    return notebook([
        code("c1", "data = load_everything()", "step:load"),
        code("c2", "result = model.predict(data)", "step:predict"),
        code("c3", "model = object()", "step:fit"),
    ])


def syntax_error():
    return notebook([
        code("ok", "x = 1", "step:first"),
        code("broken", "def f(:\n    return x", "step:second"),
    ])


def after_unknown():
    return notebook([
        code("load", "data = 1", "step:load"),
        code("train", "model = 2", "step:train", "after:lod"),
    ])


def bad_step_names():
    return notebook([
        code("c1", "a = 1", "step:1st"),
        code("c2", "b = 2", "step:data.loading"),
        code("c3", "c = 3", "step:data_loading"),
        code("c4", "d = c", "step:Data-Loading"),
    ])


def conflicting_roles():
    return notebook([
        code("both", "alpha = 0.5", "parameters", "setup"),
        code("setup-step", "import math", "setup", "step:oops"),
        code("main", "beta = math.sqrt(alpha)", "step:main"),
    ])


def r_tagged():
    return notebook([
        code("r1", "x <- c(1, 2, 3)", "step:load"),
        code("r2", "summary(x)", "step:report"),
    ], metadata=R_KERNEL)


GOOD = {
    "ml_pipeline": ml_pipeline,
    "kale_pipeline": kale_pipeline,
    "kale_metrics": kale_metrics,
    "kale_candies": kale_candies,
    "kale_xgboost": kale_xgboost,
    "fanout": fanout,
    "magics": magics,
    "untagged": untagged,
    "no_kernelspec": no_kernelspec,
    "r_untagged": r_untagged,
    "nbclient_tags": nbclient_tags,
}
BAD = {
    "cycle_after": cycle_after,
    "cycle_data": cycle_data,
    "tag_typos": tag_typos,
    "duplicate_steps": duplicate_steps,
    "bad_options": bad_options,
    "bad_parameters": bad_parameters,
    "undefined_names": undefined_names,
    "syntax_error": syntax_error,
    "after_unknown": after_unknown,
    "bad_step_names": bad_step_names,
    "conflicting_roles": conflicting_roles,
    "r_tagged": r_tagged,
}

# A notebook in the old nbformat 3 layout (worksheets, `input`, `prompt_number`, line lists).
LEGACY_V3 = {
    "metadata": {"name": "legacy_v3"},
    "nbformat": 3,
    "nbformat_minor": 0,
    "worksheets": [{
        "metadata": {},
        "cells": [
            {"cell_type": "heading", "level": 1, "metadata": {}, "source": ["Legacy notebook"]},
            {"cell_type": "code", "collapsed": False, "language": "python", "metadata": {},
             "input": ["numbers = [1, 2, 3]\n", "total = sum(numbers)"], "outputs": [],
             "prompt_number": 1},
            {"cell_type": "markdown", "metadata": {}, "source": ["Then print it."]},
            {"cell_type": "code", "collapsed": False, "language": "python", "metadata": {},
             "input": ["print(total)"],
             "outputs": [{"output_type": "stream", "stream": "stdout", "text": ["6\n"]}],
             "prompt_number": 2},
        ],
    }],
}

MALFORMED: dict[str, bytes] = {
    "truncated.ipynb": b'{\n "cells": [\n  {\n   "cell_type": "code",\n   "source": "x = ',
    "array.ipynb": b"[]\n",
    "empty_object.ipynb": b"{}\n",
    "empty.ipynb": b"",
    "nbformat5.ipynb": json.dumps({"cells": [], "metadata": {}, "nbformat": 5, "nbformat_minor": 0},
                                  indent=1).encode() + b"\n",
    # A valid notebook whose bytes are latin-1: the é in the markdown is byte 0xE9.
    "latin1.ipynb": json.dumps({
        "cells": [{"cell_type": "markdown", "id": "m", "metadata": {}, "source": "Résumé"}],
        "metadata": {}, "nbformat": 4, "nbformat_minor": 5,
    }, indent=1, ensure_ascii=False).encode("latin-1") + b"\n",
    # JSON with the right version but a schema violation (a cell without cell_type).
    "bad_schema.ipynb": json.dumps({
        "cells": [{"id": "x", "metadata": {}, "source": "x = 1"}],
        "metadata": {}, "nbformat": 4, "nbformat_minor": 5,
    }, indent=1).encode() + b"\n",
}


def write_all(folder: Path = HERE) -> list[Path]:
    written = []
    for name, build in {**GOOD, **BAD}.items():
        target = folder / f"{name}.ipynb"
        target.write_bytes((nbformat.writes(build()) + "\n").encode("utf-8"))
        written.append(target)
    target = folder / "legacy_v3.ipynb"
    target.write_bytes((json.dumps(LEGACY_V3, indent=1, sort_keys=True) + "\n").encode("utf-8"))
    written.append(target)
    malformed = folder / "malformed"
    malformed.mkdir(exist_ok=True)
    for name, data in MALFORMED.items():
        (malformed / name).write_bytes(data)
        written.append(malformed / name)
    return written


if __name__ == "__main__":
    for path in write_all():
        print(path.relative_to(HERE.parent.parent))
