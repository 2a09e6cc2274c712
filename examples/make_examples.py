"""Writes the example notebooks (run it after editing this file; the .ipynb files are committed)."""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).parent
KERNEL = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
          "language_info": {"name": "python"}}


def code(cell_id, source, *tags):
    cell = new_code_cell(source.strip("\n"), id=cell_id)
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def classifier():
    nb = new_notebook(metadata=KERNEL)
    nb.cells = [
        new_markdown_cell("# Breast-cancer classifier\n\nTagged cells become pipeline steps: "
                          "`load` → `features` → two models in parallel → `evaluate`.", id="intro"),
        code("imports", """
import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split
""", "setup"),
        code("params", """
test_size = 0.25
seed = 7
n_estimators = 100
max_depth = 6
C = 1.0
""", "parameters"),
        code("load", """
raw = load_breast_cancer(as_frame=True)
df = raw.frame
print(df.shape)
""", "step:load"),
        code("features", """
X = df.drop(columns=["target"])
y = df["target"]
X = (X - X.mean()) / X.std()
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=test_size, random_state=seed, stratify=y)
""", "step:features"),
        code("logreg", """
from sklearn.linear_model import LogisticRegression

logreg = LogisticRegression(C=C, max_iter=1000).fit(X_train, y_train)
""", "step:train_logreg"),
        code("forest", """
from sklearn.ensemble import RandomForestClassifier

forest = RandomForestClassifier(n_estimators=n_estimators, max_depth=max_depth,
                                random_state=seed, n_jobs=1).fit(X_train, y_train)
""", "step:train_forest", "cpu:1", "memory:1Gi"),
        code("evaluate", """
from sklearn.metrics import accuracy_score, roc_auc_score

logreg_accuracy = accuracy_score(y_test, logreg.predict(X_test))
forest_accuracy = accuracy_score(y_test, forest.predict(X_test))
forest_auc = roc_auc_score(y_test, forest.predict_proba(X_test)[:, 1])
""", "step:evaluate"),
        code("metrics", """
logreg_accuracy = float(logreg_accuracy)
forest_accuracy = float(forest_accuracy)
forest_auc = float(forest_auc)
""", "metrics"),
    ]
    return nb


if __name__ == "__main__":
    nbformat.write(classifier(), HERE / "classifier.ipynb")
