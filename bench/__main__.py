"""`python -m bench quick` prints one `name: value` line per figure (under 5 minutes);
`python -m bench all` runs every suite and rewrites BENCHMARKS.md; `python -m bench SUITE`
runs one suite and refreshes its part of BENCHMARKS.md."""

from __future__ import annotations

import importlib
import sys
import time

from bench.common import REPO, Section, machine

# suite name -> (module, part of `quick`)
SUITES: dict[str, tuple[str, bool]] = {
    "throughput": ("bench.throughput", True),
    "quality": ("bench.quality", True),
    "stability": ("bench.stability", False),  # 15-25 minutes on 2 shared cores
    "scale": ("bench.scale", False),
    "latency": ("bench.latency", True),
    "reliability": ("bench.reliability", False),
    "media": ("bench.media", False),
    "heic": ("bench.heic", False),
    "page": ("bench.page", False),
    "takeout": ("bench.takeout", False),
    "neardup": ("bench.neardup", False),
    "corrections": ("bench.corrections", False),
    "duplicates": ("bench.duplicates", False),  # 100k photos: 10-20 minutes
}
RESULTS = REPO / "bench" / "results"


def run_suite(name: str, quick: bool) -> Section:
    module = importlib.import_module(SUITES[name][0])
    section: Section = module.run(quick=quick)
    return section


def save(name: str, section: Section) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%d %H:%M")
    text = (f"## {section.title}\n\nCommand: `{section.command}` ({stamp}; {machine()})\n\n"
            f"{section.body.strip()}\n")
    (RESULTS / f"{name}.md").write_text(text, encoding="utf-8")


def assemble() -> None:
    parts = ["# Benchmarks\n\nEvery table below was produced by the command shown with it; "
             "`make bench` reruns them all. Speeds are ratios to a reference measured in the "
             "same run, medians of several runs: the machines are shared and noisy.\n"]
    parts += [(RESULTS / f"{name}.md").read_text(encoding="utf-8")
              for name in SUITES if (RESULTS / f"{name}.md").exists()]
    (REPO / "BENCHMARKS.md").write_text("\n".join(parts), encoding="utf-8")


def main(argv: list[str]) -> int:
    target = argv[0] if argv else "quick"
    if target == "quick":
        for name, (_, in_quick) in SUITES.items():
            if in_quick:
                for figure, value in run_suite(name, quick=True).figures.items():
                    print(f"{figure}: {value}", flush=True)
        return 0
    names = list(SUITES) if target == "all" else [target]
    for name in names:
        if name not in SUITES:
            print(f"unknown suite {name!r}; one of: quick, all, {', '.join(SUITES)}")
            return 2
        section = run_suite(name, quick=False)
        save(name, section)
        for figure, value in section.figures.items():
            print(f"{figure}: {value}", flush=True)
    assemble()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
