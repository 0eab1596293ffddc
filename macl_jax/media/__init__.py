"""Media I/O (video, audio, images) and landmark drawing; modules import only numpy-side libraries."""
