"""The portal: the TRE's web service for everyone signed in (the dataset catalogue), on an origin of its
own, signed in through the hub like the egress service (hub.web)."""
