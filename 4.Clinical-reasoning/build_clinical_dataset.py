"""Stage 4: build the clinical-reasoning Q&A dataset from pharmacological tables.

Reads the medicine catalogue, the DrugBank vocabulary and the PrimeKG drug features
(`clinical.*_csv`), cleans and cross-references them, splits by [first word of the name] +
[base composition], generates four task types and removes leaking test items. Writes
$PROJECT_DIR/4.clinical/{train,dev,test}.jsonl with .meta.jsonl sidecars, stats.json,
unmatched.csv, dataset_card.md and manifest.json.

Example:
    python 4.Clinical-reasoning/build_clinical_dataset.py --set clinical.max_items_per_task=200
    sbatch run-clinical.sh            # from 4.Clinical-reasoning/ on the cluster
"""

from __future__ import annotations

import sys

from healthai.pipeline.cli import banner, run_cli, stage_parser


def main(argv: list[str] | None = None) -> int:
    args = stage_parser(__doc__).parse_args(argv)

    def body(cfg):
        from healthai.data.clinical.stage import OUTPUT_SUBDIR, build_clinical_dataset

        c = cfg.clinical
        banner("clinical", cfg, medicines=c.medicines_csv, drugbank=c.drugbank_csv,
               features=c.drug_features_csv, output=cfg.project_path() / OUTPUT_SUBDIR)
        build_clinical_dataset(cfg, force=args.force)
        return 0

    return run_cli("clinical", args, body)


if __name__ == "__main__":
    sys.exit(main())
