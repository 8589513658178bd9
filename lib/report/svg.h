#pragma once
// Minimal inline-SVG charts for self-contained HTML reports (no scripts, no fonts to fetch).
#include <string>
#include <utility>
#include <vector>

namespace secateur::report::svg {

struct Series {
  std::string name;
  std::vector<std::pair<double, double>> points;  // (x, y), drawn in the given order
};

// Lines with markers; axes scaled to the data, min/max ticks, a legend.
std::string line_chart(const std::string& title, const std::string& x_label, const std::string& y_label,
                       const std::vector<Series>& series);

// A grid of cells shaded by value in [0, 1] (1 = dark), labelled per row and column, with the
// value printed in each cell.
std::string heatmap(const std::string& title, const std::vector<std::string>& row_labels,
                    const std::vector<std::string>& column_labels, const std::vector<std::vector<double>>& values);

std::string escape(const std::string& text);  // XML/HTML escaping

}  // namespace secateur::report::svg
