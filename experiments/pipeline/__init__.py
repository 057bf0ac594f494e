"""The pipeline layer: stages that combine the libraries over a work directory.

Binaries (`experiments/*.py`) call these; these call `pixelcnn_pp`, `classifier` and
`data_prep`; nothing here reads flags.
"""
