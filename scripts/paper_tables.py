"""Published numbers the tables are printed next to (copied from the papers' tables, for comparison only)."""

GLUE_TASKS = ["mnli", "qqp", "qnli", "sst2", "cola", "stsb", "mrpc", "rte"]

# PST Table 2, BERT-base: (method, sparsity) -> scores in GLUE_TASKS order (MNLI acc, QQP, QNLI, SST-2, CoLA MCC,
# STS-B, MRPC, RTE), as published.
PST_TABLE2_BERT_BASE = {
    ("full", 0.0): [84.72, 87.80, 91.49, 93.00, 58.55, 88.68, 89.45, 62.82],
    ("magnitude", 0.5): [83.58, 87.80, 91.47, 90.94, 60.11, 89.78, 90.73, 67.15],
    ("movement", 0.5): [82.26, 87.33, 90.83, 90.83, 57.66, 89.43, 91.06, 67.15],
    ("pst", 0.5): [80.97, 85.77, 89.77, 91.28, 57.60, 84.63, 90.72, 67.87],
    ("magnitude", 0.9): [79.75, 82.83, 85.06, 87.04, 40.74, 81.72, 82.78, 54.87],
    ("movement", 0.9): [80.06, 85.37, 86.53, 87.04, 40.46, 84.35, 84.28, 58.84],
    ("pst", 0.9): [76.73, 83.93, 86.03, 88.65, 42.49, 81.70, 85.57, 62.82],
}
PAPERS = {"pst-table2": (PST_TABLE2_BERT_BASE, GLUE_TASKS)}
