"""``mos``: validate, serve, report and export a MOS listening study.

    mos validate STUDY                      # every problem, one line each; exit 2 if any
    mos serve STUDY [--port P] [--db FILE] [--host 127.0.0.1]
    mos links STUDY --raters N|FILE --base-url URL   # one signed link per rater (access: signed)
    mos report --db FILE --out DIR [--rules rules.yaml] [--test paired-t|wilcoxon-prompt|mannwhitney|welch]
    mos export --db FILE --out DIR
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Sequence

from basekit.errors import UserError, cli_entry


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mos", description="Browser MOS listening test (MOS_r, MOS_t).")
    sub = p.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("validate", help="check a study file and every clip it names")
    v.add_argument("study")
    s = sub.add_parser("serve", help="run the listening test in the browser")
    s.add_argument("study")
    s.add_argument("--db", default=None, help="SQLite file (default: <study name>.sqlite beside the study file)")
    s.add_argument("--port", type=int, default=7860)
    s.add_argument("--host", default="127.0.0.1", help="interface to listen on (0.0.0.0 to accept other machines)")
    s.add_argument("--concurrency", type=int, default=32, help="events handled at once")
    r = sub.add_parser("report", help="screen raters, per-system MOS with CIs, pairwise tests, CSV and plots")
    r.add_argument("--db", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--rules", default=None,
                   help="YAML/JSON screening rules (default: the study's `screening`); keys: attention, gold, "
                        "max_gold_failures, zero_variance, zero_variance_min_clips, min_consensus_corr, "
                        "consensus_alpha, min_ratings (docs/mos-statistics.md)")
    r.add_argument("--test", default="paired-t",
                   help="pairwise test, paired by prompt: paired-t (default) or wilcoxon-prompt; mannwhitney or welch "
                        "treat every rating as independent")
    lk = sub.add_parser("links", help="print one signed link per rater (a study with `access: signed`)")
    lk.add_argument("study")
    lk.add_argument("--raters", required=True, help="a count N (rater ids r001, r002, ...) or a file of rater ids, "
                                                    "one per line")
    lk.add_argument("--base-url", required=True, help="the address raters open, e.g. https://mos.example.org/")
    e = sub.add_parser("export", help="dump the raw tables as CSV (and comparison answers with system names)")
    e.add_argument("--db", required=True)
    e.add_argument("--out", required=True)
    return p


def _validate(args) -> int:
    from demo.study import check_study

    study, problems = check_study(args.study)
    for line in problems:
        print(line)
    for line in study.warnings if study else ():
        print(f"mos: warning: {line}", file=sys.stderr)
    if problems:
        print(f"{args.study}: {len(problems)} problem(s)", file=sys.stderr)
        return 2
    assert study is not None
    n = len(study.systems) * len(study.prompts)
    acr = (f"{study.clips_per_rater} per rater, {len(study.gold)} gold, {len(study.attention_checks)} attention, "
           f"{len(study.training)} training; at least {-(-n * study.min_ratings_per_clip // study.clips_per_rater)} "
           f"raters for {study.min_ratings_per_clip} ratings per clip" if "acr" in study.tests else "no ACR pages")
    more = "".join(f"; {t} {getattr(study, 'cmos' if t == 'cmos' else 'mushra').pages_per_rater} pages per rater"
                   for t in study.tests if t != "acr")
    print(f"{args.study}: ok ({len(study.systems)} systems x {len(study.prompts)} prompts = {n} clips, {acr}{more}; "
          f"access {study.access})")
    return 0


def _serve(args) -> int:
    from demo.app import AppConfig, Server
    from demo.service import MosService
    from demo.study import load_study

    if not 0 <= args.port <= 65535:
        raise UserError(f"--port {args.port} is not a port number; use 1-65535 (0 picks a free one)")
    study = load_study(args.study)
    for line in study.warnings:
        print(f"mos: warning: {line}", file=sys.stderr)
    db = Path(args.db) if args.db else study.path.with_suffix(".sqlite")
    service = MosService(study, db)
    server = Server(service, AppConfig(host=args.host, port=args.port, concurrency=args.concurrency,
                                       title=study.name))
    server.start()
    links = {"open": f"{server.url}?rater=ID",
             "signed": f"{server.url} (send each rater a link from `mos links {args.study} --base-url ...`)",
             "crowd": f"{server.url}?PROLIFIC_PID={{{{%PROLIFIC_PID%}}}}&STUDY_ID={{{{%STUDY_ID%}}}}"
                      f"&SESSION_ID={{{{%SESSION_ID%}}}} (Prolific; MTurk adds workerId, assignmentId, hitId)"}
    print(f"mos: serving {study.name} at {links[study.access]} (database {db}); Ctrl-C to stop", flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        server.stop()


def _report(args) -> int:
    from demo.report import load_rules_file, summary_lines, write_report

    rules = load_rules_file(args.rules) if args.rules else None
    res = write_report(args.db, args.out, rules=rules, test=args.test)
    for line in summary_lines(res["summary"]):
        print(line)
    print(f"excluded raters: {len({e.rater_id for e in res['exclusions']})} (see exclusions.csv); wrote {args.out}")
    return 0


def _links(args) -> int:
    from demo.access import rater_ids_from, signed_links, study_secret
    from demo.study import load_study

    study = load_study(args.study)
    if study.access != "signed":
        raise UserError(f"`mos links` makes signed links, but {args.study} has `access: {study.access}`; set "
                        "`access: signed` in the study file (open studies use plain ?rater=ID links)")
    urls = signed_links(study_secret(study.secret_path), rater_ids_from(args.raters), args.base_url)
    print("\n".join(urls))
    return 0


def _export(args) -> int:
    from demo.comparative import export_comparative
    from demo.report import export_tables

    for f in export_tables(args.db, args.out) + export_comparative(args.db, args.out):
        print(f)
    return 0


@cli_entry(prog="mos", interrupted="interrupted; every rating given so far is already in the database")
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return {"validate": _validate, "serve": _serve, "report": _report, "export": _export,
            "links": _links}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
