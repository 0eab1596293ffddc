"""SynthTalk: the procedural talking-head dataset with exact ground truth (see README section SynthTalk)."""
