"""Writes the example notebooks (run it after editing this file; the .ipynb files are committed).

classifier.ipynb: a breast-cancer classifier, two models in parallel. diabetes.ipynb: a regression
with a data-validation step that fails on bad data. text_classifier.ipynb: TF-IDF and a linear
model on an inline corpus. The last two carry metric gates (assert: tags on their metrics cells).
"""

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


def diabetes():
    """A regression with a data-validation step that fails the pipeline on bad data."""
    nb = new_notebook(metadata=KERNEL)
    nb.cells = [
        new_markdown_cell("# Diabetes progression: a regression pipeline with data validation\n\n"
                          "`load` → `validate_data` → `features` → ridge and gradient boosting in parallel → "
                          "`evaluate`. `validate_data` stops the pipeline on bad data before any model sees it "
                          "(try `-p corrupt_rows 12`); the metrics cells carry gates (`assert:` tags) that "
                          "`pytest --nb2pipe` and `nb2pipe check --execute` enforce.", id="intro"),
        code("imports", """
import numpy as np
import pandas as pd
from sklearn.datasets import load_diabetes
from sklearn.model_selection import train_test_split
""", "setup"),
        code("params", """
test_size = 0.2
seed = 4
alpha = 1.0
n_estimators = 150
learning_rate = 0.05
max_depth = 2
min_rows = 400
corrupt_rows = 0
""", "parameters"),
        code("load", """
raw = load_diabetes(as_frame=True, scaled=False).frame
if corrupt_rows:  # simulate a broken upstream export: missing BMI values
    raw.loc[raw.sample(corrupt_rows, random_state=seed).index, "bmi"] = np.nan
print(raw.shape)
""", "step:load"),
        new_markdown_cell("Data validation: the schema, missing values, plausible ranges and enough rows. "
                          "A failure here skips every step downstream.", id="validation-note"),
        code("validate", """
expected_columns = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6", "target"]
ranges = {"age": (18, 90), "bmi": (15, 50), "bp": (50, 140), "target": (20, 350)}
problems = []
if list(raw.columns) != expected_columns:
    problems.append(f"columns {list(raw.columns)} differ from {expected_columns}")
missing = raw.isna().sum()
if missing.any():
    problems.append("missing values in " + ", ".join(f"{c} ({n})" for c, n in missing[missing > 0].items()))
for column, (low, high) in ranges.items():
    outside = raw[column].notna() & ~raw[column].between(low, high)
    if outside.any():
        problems.append(f"{column} outside [{low}, {high}] in {int(outside.sum())} rows")
if len(raw) < min_rows:
    problems.append(f"{len(raw)} rows, fewer than {min_rows}")
if problems:
    raise ValueError("data validation failed: " + "; ".join(problems))
data = raw
""", "step:validate_data"),
        code("data-metrics", """
n_rows = len(data)
""", "metrics", "assert:n_rows>=400"),
        code("features", """
X = data.drop(columns=["target"])
y = data["target"]
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=test_size, random_state=seed)
""", "step:features"),
        code("ridge", """
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

ridge = make_pipeline(StandardScaler(), Ridge(alpha=alpha)).fit(X_train, y_train)
""", "step:train_ridge"),
        code("boosting", """
from sklearn.ensemble import GradientBoostingRegressor

boosting = GradientBoostingRegressor(n_estimators=n_estimators, learning_rate=learning_rate,
                                     max_depth=max_depth, random_state=seed).fit(X_train, y_train)
""", "step:train_boosting", "cpu:1"),
        code("evaluate", """
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

ridge_pred = ridge.predict(X_test)
boosting_pred = boosting.predict(X_test)
""", "step:evaluate"),
        code("metrics", """
ridge_r2 = float(r2_score(y_test, ridge_pred))
ridge_rmse = float(np.sqrt(mean_squared_error(y_test, ridge_pred)))
boosting_r2 = float(r2_score(y_test, boosting_pred))
boosting_mae = float(mean_absolute_error(y_test, boosting_pred))
""", "metrics", "assert:ridge_r2>=0.4", "assert:ridge_rmse<=58", "assert:boosting_r2>=0.35"),
    ]
    return nb


# A tiny inline corpus: three topics with their own vocabulary, twenty sentences each.
CORPUS = {
    "sports": [
        "the striker scored a late goal and the fans cheered in the stadium",
        "our keeper saved a penalty in the final minute of the match",
        "the coach praised the defence after a clean sheet away from home",
        "she won the tennis final in straight sets on the clay court",
        "the marathon runners crossed the finish line in record time",
        "a hat trick from the captain sealed the league title",
        "the referee showed a red card after a reckless tackle",
        "the team trained hard before the cup semi final",
        "the sprinter broke the national record in the hundred metres",
        "fans queued for tickets to the derby at the stadium",
        "the cyclist attacked on the final climb and won the stage",
        "the goalkeeper signed a new contract with the club",
        "the home side equalised with a header from a corner",
        "the swimmer took gold in the relay at the championships",
        "the batsman hit a century and the crowd applauded",
        "injury kept the midfielder out of the match on saturday",
        "the league table changed after a dramatic weekend of football",
        "the boxer defended his title with a knockout in the third round",
        "the players celebrated the promotion with their fans",
        "a penalty shootout decided the cup final",
    ],
    "cooking": [
        "simmer the tomato sauce with garlic and fresh basil",
        "knead the dough and let the bread rise for an hour",
        "roast the vegetables with olive oil salt and pepper",
        "whisk the eggs with sugar until the batter is pale",
        "season the soup and serve it with crusty bread",
        "fry the onions slowly until they caramelise in the pan",
        "bake the cake in a hot oven for forty minutes",
        "chop the herbs and stir them into the risotto",
        "marinate the chicken in lemon yoghurt and spices overnight",
        "grate the cheese over the pasta before serving",
        "the recipe needs butter flour and a pinch of salt",
        "steam the rice and fold in the toasted sesame seeds",
        "slice the apples thinly for the tart and dust with cinnamon",
        "stir the curry and add coconut milk to the pan",
        "the chef tasted the sauce and added more pepper",
        "grill the fish and squeeze lemon over it",
        "melt the chocolate gently over a pan of simmering water",
        "toast the spices before grinding them for the stew",
        "let the pastry rest in the fridge before rolling it out",
        "the soup recipe uses lentils carrots and cumin",
    ],
    "technology": [
        "the new laptop has a faster processor and more memory",
        "update the software to fix the security vulnerability",
        "the startup released an app for tracking expenses",
        "engineers deployed the service to the cloud cluster",
        "the phone battery lasts two days on a single charge",
        "the database query was slow until we added an index",
        "the company announced a chip for machine learning",
        "install the driver and restart the computer",
        "the website went down after the server ran out of disk",
        "developers wrote unit tests before merging the code",
        "the network router needs a firmware upgrade",
        "the operating system update improved battery life",
        "the programmer fixed a bug in the login page",
        "the data centre added racks of new servers",
        "encryption protects the messages sent by the app",
        "the keyboard and monitor connect over usb",
        "the open source library gained a new release",
        "the cloud provider cut the price of storage",
        "the robot uses sensors and software to avoid obstacles",
        "backups of the database run every night on the server",
    ],
}


def text_classifier():
    """A small text classifier: character TF-IDF features and a linear model on an inline corpus."""
    nb = new_notebook(metadata=KERNEL)
    rows = "\n".join(f"    ({text!r}, {label!r})," for label, texts in CORPUS.items() for text in texts)
    nb.cells = [
        new_markdown_cell("# Topic classifier: character TF-IDF + logistic regression on a tiny inline corpus\n\n"
                          "`corpus` → `split` → `vectorize` → `train` → `evaluate`, with metric gates on the "
                          "metrics cell. The fitted vectorizer and the sparse matrices pass between steps as "
                          "artifacts.", id="intro"),
        code("imports", """
import pandas as pd
from sklearn.model_selection import train_test_split
""", "setup"),
        code("params", """
test_size = 0.3
seed = 3
C = 10.0
max_ngram = 5
""", "parameters"),
        code("corpus", f"""
rows = [
{rows}
]
corpus = pd.DataFrame(rows, columns=["text", "label"])
print(corpus["label"].value_counts().to_dict())
""", "step:corpus"),
        code("split", """
train_df, test_df = train_test_split(corpus, test_size=test_size, random_state=seed, stratify=corpus["label"])
""", "step:split"),
        code("vectorize", """
from sklearn.feature_extraction.text import TfidfVectorizer

# Character n-grams within words: a corpus this small shares few whole words between sentences.
vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, max_ngram), sublinear_tf=True)
vectorizer.fit(train_df["text"])
X_train = vectorizer.transform(train_df["text"])
X_test = vectorizer.transform(test_df["text"])
""", "step:vectorize"),
        code("train", """
from sklearn.linear_model import LogisticRegression

model = LogisticRegression(C=C, max_iter=1000).fit(X_train, train_df["label"])
""", "step:train"),
        code("evaluate", """
from sklearn.metrics import accuracy_score, f1_score

predicted = model.predict(X_test)
""", "step:evaluate"),
        code("metrics", """
accuracy = float(accuracy_score(test_df["label"], predicted))
macro_f1 = float(f1_score(test_df["label"], predicted, average="macro"))
vocabulary = len(vectorizer.vocabulary_)
""", "metrics", "assert:accuracy>=0.8", "assert:macro_f1>=0.8"),
    ]
    return nb


if __name__ == "__main__":
    nbformat.write(classifier(), HERE / "classifier.ipynb")
    nbformat.write(diabetes(), HERE / "diabetes.ipynb")
    nbformat.write(text_classifier(), HERE / "text_classifier.ipynb")
