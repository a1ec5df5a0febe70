"""The judge settings ``distill_cv.py`` compares: each a name and the ``selfj-trl train`` flags that differ from the
judge recipe's own values. A new setting is one new entry here."""

#: The paper's pointwise loss, by epochs (``--num_train_epochs`` in ``--train_flags``), whatever the recipe's loss.
POINTWISE = [
    "--loss_type",
    "pointwise",
    "--per_device_train_batch_size",
    "16",
    "--max_steps",
    "-1",
    "--pairs_per_row",
    "0",
]
#: Bradley-Terry on pairs of answers to one instruction: only the within-instruction order of the labels is learnt
#: (the label's per-instruction offset needs the reference; see label_probe.py --targets centered). 8 pairs a step
#: are 32 forwards like 16 pointwise rows; one pair per labeled row matches the forwards of two pointwise epochs.
PAIRWISE_LOSS = ["--loss_type", "pairwise", "--per_device_train_batch_size", "8", "--max_steps", "-1"]
PAIRWISE = [*PAIRWISE_LOSS, "--pairs_per_row", "1.0"]
#: name -> extra ``selfj-trl train`` flags; the MiniLM recipe's own values apply to everything not named here.
SETTINGS = {
    "distill2": [*POINTWISE, "--distill_weight", "2.0"],
    "distill0": [*POINTWISE, "--distill_weight", "0.0"],
    "distill2_warmup": [*POINTWISE, "--distill_weight", "2.0", "--distill_warmup_ratio", "0.3"],
    "distill1": [*POINTWISE, "--distill_weight", "1.0"],
    "distill0.5": [*POINTWISE, "--distill_weight", "0.5"],
    "distill2_student1": [*POINTWISE, "--distill_weight", "2.0", "--student_weight", "1.0"],
    "distill2_student0": [*POINTWISE, "--distill_weight", "2.0", "--student_weight", "0.0"],
    # Without distillation the student view (the one a reward model is used with) learns only from its own label term.
    "distill0_student1": [*POINTWISE, "--distill_weight", "0.0", "--student_weight", "1.0"],
    "pairwise": [*PAIRWISE, "--distill_weight", "0.0"],
    # The student view is the one a reward model is used with; the recipe weighs its label term 0.3 against 1.0.
    "pairwise_student1": [*PAIRWISE, "--distill_weight", "0.0", "--student_weight", "1.0"],
    "pairwise_distill1": [*PAIRWISE, "--distill_weight", "1.0"],
    "pairwise_distill2_warmup": [*PAIRWISE, "--distill_weight", "2.0", "--distill_warmup_ratio", "0.3"],
    # Distil only the teacher's order within an instruction (KL between the two views' pair preferences), not its
    # score level, which comes from the reference the student never sees.
    "pairwise_pdistill1": [*PAIRWISE, "--distill_weight", "1.0", "--distill_loss", "preference"],
    # Twice the pairs (and steps) on the same labels: whether the judge is short of steps or of labels.
    "pairwise_pairs2": [*PAIRWISE_LOSS, "--pairs_per_row", "2.0", "--distill_weight", "0.0"],
    # The recipe on labels whose within-instruction trend in log length is taken out: what the length lean costs.
    "pairwise_length_residual": [*PAIRWISE, "--distill_weight", "0.0", "--length_control", "residual"],
    # The recipe on pairs whose answers are within 1.5x of each other in words: no pair's order is told by length.
    "pairwise_length_matched": [*PAIRWISE, "--distill_weight", "0.0", "--length_control", "matched"],
    # The recipe beside a fixed length-only preference model (a product of experts): the judge learns the rest.
    "pairwise_length_explained": [*PAIRWISE, "--distill_weight", "0.0", "--length_control", "explained"],
    # The recipe with the squared batch correlation of its score differences with log length differences penalised.
    "pairwise_length_decorrelated": [*PAIRWISE, "--distill_weight", "0.0", "--length_control", "decorrelated"],
    # The same penalty at 0.3 of its default weight: whether a weaker pull keeps what the judge learns.
    "pairwise_length_decorrelated0.3": [
        *PAIRWISE,
        "--distill_weight",
        "0.0",
        "--length_control",
        "decorrelated",
        "--length_decorrelation_weight",
        "0.3",
    ],
}
#: Settings trained on their fold's labels plus the ``--contrast`` rows of the same training instructions
#: (answers said twice, padded, cut, written for another instruction: contrast_pool.py), with the flags of the
#: setting named: the one difference from it is those rows.
CONTRAST_SETTINGS = {"pairwise_contrast": "pairwise"}
