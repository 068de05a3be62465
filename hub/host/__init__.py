"""Host operations: the workspace network and its firewall, and the notebook image build."""
