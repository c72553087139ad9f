"""Cost: pricing attempts and reporting what shows cost (owns: metering maths and reports)."""
