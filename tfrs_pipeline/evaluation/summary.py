"""The figures of a run as people read them: the metrics table, the phases line and the model card."""

from __future__ import annotations

from pathlib import Path

from tfrs_pipeline.config import PipelineConfig


def format_metrics(metrics: dict) -> str:
    """The headline numbers beside most-popular (and matrix factorization for RMSE), then the top-10 ablation."""
    popular = metrics["baselines"]["most_popular"]
    mf = metrics["baselines"]["matrix_factorization"]["rating"]
    rows = [("metric", "model", "most-popular")]
    for k, v in metrics["factorized_top_k"].items():
        rows.append((f"factorized {k} (seen kept)", f"{v:.4f}", f"{popular['factorized_top_k'][k]:.4f}"))
    for k in ("hit_rate_at_10", "hit_rate_at_100", "recall_at_10", "recall_at_100", "ndcg_at_10"):
        if k in metrics["excluding_seen"]:
            rows.append((f"retrieval {k} (seen excluded)", f"{metrics['excluding_seen'][k]:.4f}",
                         f"{popular['excluding_seen'][k]:.4f}"))
    for k in ("hit_rate_at_10", "recall_at_10", "ndcg_at_10"):
        if k in metrics["pipeline"]:
            rows.append((f"two-stage {k}", f"{metrics['pipeline'][k]:.4f}", f"{popular['pipeline'][k]:.4f}"))
    if "rmse" in metrics["rating"]:
        rows.append(("rating model RMSE", f"{metrics['rating']['rmse']:.4f}",
                     f"{popular['rating']['rmse']:.4f} (movie mean); MF {mf['rmse']:.4f}"))
    width = max(len(r[0]) for r in rows)
    lines = [f"  {name:<{width}}  {a:>8}  {b}" for name, a, b in rows]
    if "note" in metrics["rating"]:
        lines.append(f"  rating model: {metrics['rating']['note']}")
    if "ablation" in metrics:
        lines.append(format_ablation(metrics["ablation"]))
    if metrics.get("cold_start") and "pipeline" in metrics:
        lines.append(format_visitors(metrics["pipeline"], metrics["cold_start"]))
    return "\n".join(lines)


def format_visitors(known: dict[str, float], cold_start: dict[str, dict[str, float]]) -> str:
    """The test users served three ways, side by side: by id, as visitors bringing all their training
    movies, and as visitors bringing their 5 most recent (beside most-popular minus those 5)."""
    rows = [("known users, by id", known, "")]
    if "history_all" in cold_start:
        ratio = cold_start["history_all"]["ndcg_at_10"] / max(known["ndcg_at_10"], 1e-12)
        rows.append(("visitors with all their training movies", cold_start["history_all"], f"{ratio:.3f}x known users"))
    recent = next((key for key in cold_start if key.startswith("history_") and key != "history_all"), None)
    if recent is not None:
        count = recent.rsplit("_", 1)[1]
        popular = cold_start.get(f"most_popular_{recent}")
        ratio = (f"{cold_start[recent]['ndcg_at_10'] / max(popular['ndcg_at_10'], 1e-12):.3f}x most popular"
                 if popular else "")
        rows.append((f"visitors with their {count} most recent movies", cold_start[recent], ratio))
        if popular:
            rows.append((f"most popular, minus those {count}", popular, ""))
    width = max(len(name) for name, _, _ in rows)
    lines = ["", f"  the test users served as{'':>{max(0, width - 24)}}  hit rate@10  recall@10    NDCG@10"]
    for name, numbers, note in rows:
        lines.append(f"  {name:<{max(width, 24)}}  {numbers['hit_rate_at_10']:>11.4f}  {numbers['recall_at_10']:>9.4f}"
                     f"  {numbers['ndcg_at_10']:>9.4f}  {note}".rstrip())
    return "\n".join(lines)


def format_phases(training: dict) -> str:
    """One line: each phase's seconds and the peak memory when it ended, and the export's size."""
    phases = training.get("phases", {})
    cells = [f"{name.replace('_', ' ')} {r['seconds']:.0f} s ({r['peak_rss_mib'] / 1024:.1f} GiB)"
             for name, r in phases.items()]
    return "phases (peak memory so far): " + ", ".join(cells) + f"; export {training.get('export_mib', 0):.1f} MiB"


def format_ablation(ablation: dict[str, dict[str, float]]) -> str:
    """One line per system: its top 10 with seen movies excluded."""
    width = max(len(name) for name in ablation)
    lines = ["", f"  top 10, seen movies excluded{'':>{max(0, width - 27)}}  hit rate@10  recall@10    NDCG@10"]
    for name, numbers in ablation.items():
        lines.append(f"  {name:<{max(width, 27)}}  {numbers['hit_rate_at_10']:>11.4f}  {numbers['recall_at_10']:>9.4f}"
                     f"  {numbers['ndcg_at_10']:>9.4f}")
    return "\n".join(lines)


def model_card(config: PipelineConfig, metrics: dict, path: Path) -> str:
    """A short README for the version folder: data, split, metrics, how to load."""
    split = metrics["split"]
    return f"""# Model card: {path.parent.name} version {path.name}

Two-stage movie recommender (tfrs-pipeline): two-tower retrieval over the whole catalog
(seen movies excluded), then a list ranker that orders {config.serving.num_candidates} candidates, each with
its predicted rating.

## Data and split
- data: `{metrics['data']['source']}` ({metrics['data']['ratings']:,} ratings; {metrics['data']['validation']['rows_dropped']:,} rows dropped by validation)
- split: {split['kind']} (test fraction {split['test_fraction']}, seed {split['seed']}), {split['train_ratings']:,} training / {split['test_ratings']:,} test ratings
- data fingerprint: `{split['data_fingerprint']}`; test-set fingerprint `{split['test_fingerprint']}`

## Test metrics (beside the most-popular baseline)
```
{format_metrics(metrics)}
```
Factorized top-K: TFRS `FactorizedTopK`, seen movies kept. Hit rate: share of test ratings
whose movie is in the user's top K; recall: per-user hits / the user's test movies, averaged
over users; both with the user's training movies excluded. Full numbers in `metrics.json`;
training curves in `history.json`; configuration in `config.toml`.

## Load and call (TensorFlow alone)
```python
import tensorflow as tf
model = tf.saved_model.load("{path}")
out = model.signatures["serving_default"](user_id=tf.constant(["1"]), k=tf.constant(10))
print(out["titles"], out["predicted_ratings"])
```
Signatures: `serving_default(user_id, k)`, `recommend_with_history(user_id, movie_ids, exclude_movie_ids, k)`,
`recommend_from_history(movie_ids, k)`, `retrieve(user_id, k)`, `predict_ratings(user_id, movie_ids)` (`rank`
until the next release), `similar_movies(movie_id, k)`, `explain(user_id, movie_id, k)`, `rated_movies(user_id, k)`. Each stage alone, beside this folder:
`../stages/query_tower/{path.name}`, `../stages/candidate_tower/{path.name}`, `../stages/index/{path.name}`,
`../stages/ranking/{path.name}` (each `../stages/STAGE` a model base). Serve over HTTP: `tfrs-pipeline serve --model {path.parent}`.
"""
