"""Media: audio features, audio/video files, images and landmark drawing."""
