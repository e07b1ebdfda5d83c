"""The code behind the notebooks, one module per notebook, above the methods and the study.

corpus (00), pretraining (01), domains (02), importance (03), hypernet (04), mixture (05),
distillation (06), findings (07) and decisions (08); the budget explorer's widgets are `lab.ui`.
"""
