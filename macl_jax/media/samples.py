"""Sample media shipped with the package, so that tests, fixtures and benchmarks need no download.

`arctic_speech_file()`: 4 s of real English speech, CMU ARCTIC `arctic_a0007.wav` from the
`cmu_us_awb_arctic` voice (16 kHz, 16-bit mono PCM), under the CMU ARCTIC licence; see
`assets/README.md` and `assets/CMU_ARCTIC_COPYING`.
"""

from __future__ import annotations

from pathlib import Path

_ASSETS = Path(__file__).resolve().parent / "assets"
ARCTIC_SPEECH_FILE = _ASSETS / "arctic_a0007.wav"


def arctic_speech_file() -> Path:
    """Path of the shipped CMU ARCTIC recording (awb, a0007): 4.0 s, 16 kHz mono WAV."""
    if not ARCTIC_SPEECH_FILE.is_file():
        raise FileNotFoundError(
            f"speech sample missing: {ARCTIC_SPEECH_FILE}. It must be installed as package data "
            "(pyproject.toml [tool.setuptools.package-data]); reinstall with bash launch/setup.sh"
        )
    return ARCTIC_SPEECH_FILE
