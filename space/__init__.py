"""The Gradio Space of LAVIDA: ``app`` (the page), ``service`` (one request), ``settings``, ``presets``, ``examples``.

Launch it with ``lavida demo`` or, as a Hugging Face Space, ``python app.py``. Importing this package imports nothing
heavy; ``lavida.space.app`` imports Gradio.
"""
