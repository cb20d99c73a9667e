"""The application controller (no Qt): owns the session and every derived number, and
builds the long jobs as generators that the GUI runs in workers and the CLI runs inline."""

from quantviz.app.activation import ActivationData, activation_data
from quantviz.app.controller import (
    SENSITIVITY_BITS,
    SWEEP_BITS,
    AppController,
    Opened,
    config_of,
)
from quantviz.app.jobs import Job, drive, run_job
from quantviz.app.metrics import SqnrTable, compute_sqnr

__all__ = [
    "SENSITIVITY_BITS",
    "SWEEP_BITS",
    "ActivationData",
    "AppController",
    "Job",
    "Opened",
    "SqnrTable",
    "activation_data",
    "compute_sqnr",
    "config_of",
    "drive",
    "run_job",
]
