"""sagelab's one entry point: `python run.py [group=option ...] [key=value ...]` (see README.md)."""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

import sagelab.schema  # noqa: F401  (registers the typed schema that conf/config.yaml starts from)
from sagelab.cli import check_command_line, exit_process, main


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def run(cfg: DictConfig) -> None:
    main(cfg)


if __name__ == "__main__":
    check_command_line(sys.argv[1:], Path(__file__).parent / "conf")
    try:
        run()
    except SystemExit as stop:  # Hydra's and sagelab's own exits (bad config: 2, failed run: 1)
        exit_process(stop.code)
    exit_process(0)
