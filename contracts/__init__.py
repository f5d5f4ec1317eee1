"""mtrec's contracts: what crosses the boundaries between packages.

Feature and record names, the model and serving directory layouts (with the
one rule for which version is served), artifact metadata and file names, and
the readers of TF-free artifact files. Everything above imports from here;
nothing here imports TensorFlow, Beam or another mtrec package, so any step,
tool or test can read the contracts without paying for a framework
(checked by the import contracts in `.importlinter`).
"""
