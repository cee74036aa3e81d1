"""Benchmark data from free audio in Debian packages: an unlabelled pretraining corpus and labelled HEAR tasks.

`decar data build-bench` (see :mod:`decar.corpora.bench`) fetches the packages, designs tasks whose valid and
test sources never reach the corpus, renders 16 kHz FLAC clips and writes a manifest and SOURCES.md.
"""
