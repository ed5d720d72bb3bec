"""The recipe that trains blip2-shapes from nothing with the project's own commands (``blip2-shapes train``);
see README.md beside this file for its steps and the measurements behind them."""
