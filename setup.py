"""The package layout, the one thing pyproject.toml cannot say: the top-level conf/ (Hydra's config dir, where
`python train.py` reads it) is shipped inside the package as sparsetune/conf, so an installed `sparsetune`
console script finds its configs (sparsetune.cli.config_dir)."""
from setuptools import find_namespace_packages, setup

# data-only folders (conf/model, sparsetune/tables/published, ...) are listed as packages so their YAML files ship
# hydra_plugins.sparsetune_cluster: our launchers (hydra/launcher=slurm | local_tasks) in Hydra's plugin namespace package
code = find_namespace_packages(include=["sparsetune", "sparsetune.*", "hydra_plugins.sparsetune_cluster"], exclude=["*.__pycache__"])
conf = ["sparsetune.conf", *(f"sparsetune.conf.{p}" for p in find_namespace_packages(where="conf", exclude=["*.__pycache__"]))]

setup(packages=[*code, *conf], package_dir={"sparsetune.conf": "conf"}, package_data={"": ["*.yaml"]})
