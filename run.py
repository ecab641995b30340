"""sagelab's one entry point: `python run.py [group=option ...] [key=value ...]` (see README.md)."""

import hydra
from omegaconf import DictConfig

from sagelab.cli import main


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def run(cfg: DictConfig) -> None:
    main(cfg)


if __name__ == "__main__":
    run()
