"""TRE egress: the output review service (`review`, `web`) and the disclosure control engine (`sdc`)."""
