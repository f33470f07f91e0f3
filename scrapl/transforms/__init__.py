"""Built-in scattering-transform plugins.

* :mod:`scrapl.transforms.filterbank` -- Morlet / Gaussian filter design (numpy) shared
  by the transforms;
* :mod:`scrapl.transforms.jtfs` -- joint time-frequency scattering (plugin ``"jtfs"``).

Sub-packages are imported on demand; this package imports nothing heavy.
"""
