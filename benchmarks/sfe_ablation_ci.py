"""Is one SFE variant's speaker-verification EER really below another's? A paired speaker bootstrap.

    python -m benchmarks.sfe_ablation_ci runs/sfe_cpu_cs runs/sfe_cpu_wo [--checkpoint best|final|<step>]

Both runs are read with their own recorded config (`<workdir>/config.json`), their identity
embeddings are computed on the held-out split, both are scored on the same trials, and
`macl_jax.metrics.verification.paired_speaker_bootstrap` resamples the test speakers. Prints one
JSON object: the two EERs, the mean and 95% interval of EER(a) - EER(b), and the share of
replicates in which a is not worse.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from macl_jax.config import recorded_config
from data_pipelines import datasets
from data_pipelines.windows import SFEWindows
from macl_jax.evals.sfe import split_labels, verification_trials
from macl_jax.train.restore import restore_state
from macl_jax.evals.trials import cosine_scores, trial_indices
from macl_jax.metrics.verification import paired_speaker_bootstrap
from macl_jax.train import sfe
from macl_jax.train.runtime import runtime_mesh


def scores(workdir: Path, checkpoint: str, split: str):
    config = recorded_config(workdir, checkpoint)
    mesh = runtime_mesh(config)
    task = sfe.build_task(config, epoch_steps=1)
    state, step = restore_state(task, config, workdir, mesh)
    directory = datasets.dataset_dir(config.data)
    window = SFEWindows(num_steps=int(config.windows.num_steps), stride=int(config.windows.stride), train=False, frames=False)
    encode = jax.jit(lambda s, a: jnp.mean(task.model(s).sfe.encode_audio(a, train=False)["identity"], axis=1))
    source = datasets.clip_source(directory, split)
    rows = [window(source[i], np.random.default_rng(0))["audio"] for i in range(len(source))]
    embeddings = np.concatenate([np.asarray(encode(state, jnp.asarray(np.stack(rows[i : i + 16])))) for i in range(0, len(rows), 16)])
    utterances, trials = verification_trials(config, directory, split)
    enrol, test, labels = trial_indices(trials, utterances)
    speakers = np.asarray(split_labels(directory, split)[1])
    return cosine_scores(embeddings, enrol, test), labels, speakers[enrol], speakers[test], step


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_a", type=Path)
    parser.add_argument("run_b", type=Path)
    parser.add_argument("--checkpoint", default="best", help="best (the run's selected state), final, or a step")
    parser.add_argument("--split", default="test")
    parser.add_argument("--replicates", type=int, default=1000)
    args = parser.parse_args(argv)
    a, labels, s1, s2, step_a = scores(args.run_a, args.checkpoint, args.split)
    b, labels_b, _, _, step_b = scores(args.run_b, args.checkpoint, args.split)
    if not np.array_equal(labels, labels_b):
        raise SystemExit("the two runs were evaluated on different trials; compare runs on the same dataset")
    out = paired_speaker_bootstrap(a, b, labels, s1, s2, replicates=args.replicates)
    print(json.dumps({"a": str(args.run_a), "step_a": step_a, "b": str(args.run_b), "step_b": step_b, **out}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
