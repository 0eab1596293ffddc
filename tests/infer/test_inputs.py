"""Generation inputs: any audio format, rate and channel count; photos; errors that name the file."""

from fractions import Fraction

import av
import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from macl_jax.infer.inputs import DEFAULT_LOUDNESS_DB, crop_face, decode_speech, find_face, load_photo
from macl_jax.media.video_io import MediaError


def _speechlike(rate: int, seconds: float, channels: int) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    envelope = 0.5 * (1 + np.sin(2 * np.pi * 3 * t)) * (t > 0.3)  # 0.3 s of silence, then syllables
    mono = 0.3 * envelope * np.sin(2 * np.pi * 220 * t)
    return np.stack([mono * (0.5 + 0.5 * c) for c in range(channels)], axis=1).astype(np.float32)


def _encode(path, audio: np.ndarray, rate: int, codec: str) -> None:
    layout = "stereo" if audio.shape[1] == 2 else "mono"
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate, layout=layout)
        for start in range(0, len(audio), 4096):
            # Packed float frames: PyAV converts them to the encoder's sample format.
            data = audio[start : start + 4096].reshape(1, -1).copy()
            frame = av.AudioFrame.from_ndarray(data, format="flt", layout=layout)
            frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


@pytest.mark.parametrize("suffix,codec,rate,channels", [
    (".wav", "pcm_s16le", 44100, 2), (".flac", "flac", 22050, 1), (".mp3", "libmp3lame", 48000, 2), (".m4a", "aac", 32000, 1),
])
def test_any_format_rate_and_channel_count_decodes_to_16k_at_the_training_level(tmp_path, suffix, codec, rate, channels):
    path = tmp_path / f"speech{suffix}"
    _encode(path, _speechlike(rate, 2.0, channels), rate, codec)
    speech = decode_speech(path, tmp_path / "work")
    assert speech.num_samples == pytest.approx(32000, abs=2000)  # lossy codecs pad a little
    assert speech.num_frames == -(-speech.num_samples // 640)
    assert speech.track_rate == rate
    assert sf.info(str(speech.track_wav)).samplerate == rate
    samples = speech.read(0, speech.num_samples)
    frames = samples[: len(samples) // 640 * 640].reshape(-1, 640)
    level = np.percentile(10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12), 95)
    assert level == pytest.approx(DEFAULT_LOUDNESS_DB, abs=0.5)
    assert np.all(speech.read(-100, 0) == 0) and len(speech.read(speech.num_samples, speech.num_samples + 10)) == 10


def test_silent_short_missing_and_corrupt_audio_are_refused_with_the_file_named(tmp_path):
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(16000, np.float32), 16000)
    with pytest.raises(MediaError, match="silent.wav.*silent"):
        decode_speech(silent, tmp_path / "w")
    short = tmp_path / "short.wav"
    sf.write(short, _speechlike(16000, 0.4, 1)[-1000:, 0], 16000)
    with pytest.raises(MediaError, match="short.wav.*at least"):
        decode_speech(short, tmp_path / "w")
    with pytest.raises(MediaError, match="missing.wav.*not found"):
        decode_speech(tmp_path / "missing.wav", tmp_path / "w")
    corrupt = tmp_path / "corrupt.mp3"
    corrupt.write_bytes(b"\x00not audio at all" * 50)
    with pytest.raises(MediaError, match="corrupt.mp3"):
        decode_speech(corrupt, tmp_path / "w")


def test_photos_without_a_face_or_unreadable_are_refused_with_the_fix(tmp_path):
    blank = tmp_path / "wall.png"
    Image.fromarray(np.full((300, 400, 3), 200, np.uint8)).save(blank)
    with pytest.raises(MediaError, match="wall.png.*no face.*frontal"):
        find_face(load_photo(blank), blank)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    with pytest.raises(MediaError, match="broken.jpg.*not a readable image"):
        load_photo(broken)


@pytest.mark.parametrize("scale", [0.5, 1.0, 2.5])
def test_face_is_found_and_cropped_at_any_photo_size(tmp_path, scale):
    from skimage import data

    photo = data.astronaut()
    size = (int(512 * scale), int(512 * scale))
    path = tmp_path / "astronaut.jpg"
    Image.fromarray(photo).resize(size, Image.BICUBIC).save(path, quality=95)
    image = load_photo(path)
    landmarks = find_face(image, path)
    crop, in_crop = crop_face(image, landmarks, 256, 2.0)
    assert crop.shape == (256, 256, 3)
    extent = np.max(in_crop.max(0) - in_crop.min(0))
    assert extent == pytest.approx(128, rel=0.05)  # crop side = 2 x the face extent
    assert np.all((in_crop > 0) & (in_crop < 255))
