"""Selective sweeps: simulation, SweepNet images, inputs and genome scans."""

#: class labels in label order
CLASSES = ("neutral", "sweep")
