"""The last stage of the pipeline: DUIS responses and alerts back to the user.

``documents`` builds unsigned ``sr:Response`` trees (valid under the official
DUIS 5.4 XSD); signing and delivery are separate steps.
"""
