"""TRE egress: output review service and statistical disclosure control engine."""
