"""Search spaces shipped with bnn-nas (installed as ``bnn_nas.search_spaces``)."""
