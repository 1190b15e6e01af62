"""Operator tools above the stages: reprocess, retention and storage GC, the local pipeline
harness and the KEDA capacity model. Only accessa.cli, bench and tests import them."""
