"""GLUE's side of ``mode=diagnose``: its evaluation files scored by the loaded model, and its training split.

The evaluation set is the task's evaluation files (``task.eval_files``, the dev set; ``data.eval_limit``
applies), also under ``data.holdout``, where they are the test split nobody selected on. The training texts
are the training split as training reads it (``data.train_limit`` applies: the data the model saw; set it to
null to check the whole file). A sentence pair is one text, ``sentence1 ||| sentence2``, for the data checks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from sagelab.context import TaskContext
    from sagelab.diagnose import DiagnoseInputs

PAIR_JOIN = " ||| "


def diagnose_inputs(cfg: DictConfig, context: TaskContext) -> DiagnoseInputs:
    from sagelab.diagnose import DiagnoseInputs
    from sagelab.models import load_tokenizer
    from sagelab.tasks.glue.formats import load_split

    task, data = cfg.task, cfg.data
    fields = [str(f) for f in task.text_fields]

    def split(files: list[str], hub_split: str, limit: Any) -> Any:
        rows = load_split(str(task.source), str(task.format), files, task.get("hub_config"), hub_split,
                          int(task.num_labels))
        return rows.select(range(min(int(limit), len(rows)))) if limit else rows

    train = split([str(task.train_file)], "train", data.get("train_limit"))
    evaluation = split([str(f) for f in task.eval_files], str(task.hub_eval_split), data.get("eval_limit"))
    columns = [list(evaluation[f]) for f in fields]
    module = context.load_module().eval()
    tokenizer = load_tokenizer(cfg.model)
    max_length = int(data.max_length)
    scores = positive_probabilities(module, tokenizer, columns, max_length, int(cfg.optim.eval_batch_size),
                                    context.precision)

    def attribute(indices: Sequence[int]) -> list[list[tuple[str, float]]]:
        from sagelab.diagnose.attribution import integrated_gradients

        return integrated_gradients(module.model, tokenizer, [[column[i] for i in indices] for column in columns],
                                    max_length, int(cfg.diagnose.attribution_steps))

    def joined(rows: Any) -> list[str]:
        return [PAIR_JOIN.join(parts) for parts in zip(*[rows[f] for f in fields])]

    source = str(task.source)
    return DiagnoseInputs(
        scores=scores, labels=list(evaluation["label"]), texts=joined(evaluation), train_texts=joined(train),
        train_labels=list(train["label"]), positive="label 1",
        source={"eval": ", ".join(f"{source}/{f}" for f in task.eval_files) + f" ({len(evaluation)} examples)",
                "train": f"{source}/{task.train_file} ({len(train)} examples)"},
        attribute=attribute,
    )


def positive_probabilities(module: Any, tokenizer: Any, columns: list[list[str]], max_length: int,
                           batch_size: int, precision: str) -> list[float]:
    """P(label 1) per example, in input order: batches of similar length, at the run's inference precision."""
    from sagelab.data.batching import pad_collate
    from sagelab.hardware import inference

    order = sorted(range(len(columns[0])), key=lambda i: sum(len(c[i]) for c in columns), reverse=True)
    collate, scores = pad_collate(tokenizer.pad_token_id), [0.0] * len(order)
    with inference(precision):
        for start in range(0, len(order), batch_size):
            positions = order[start:start + batch_size]
            enc = tokenizer(*[[c[i] for i in positions] for c in columns], truncation=True, max_length=max_length)
            batch = collate([{k: enc[k][j] for k in enc} for j in range(len(positions))])
            probabilities = module.predict_step(batch).logits.float().softmax(-1)[:, 1]
            for i, p in zip(positions, probabilities.tolist()):
                scores[i] = p
    return scores
