#include "report/svg.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "util/strings.h"

namespace secateur::report::svg {

std::string escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

namespace {

const char* kColours[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"};

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

std::string tick(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, std::fabs(v) >= 1000 || (std::fabs(v) < 0.01 && v != 0) ? "%.3g" : "%.4g", v);
  return buf;
}

}  // namespace

std::string line_chart(const std::string& title, const std::string& x_label, const std::string& y_label,
                       const std::vector<Series>& series) {
  constexpr double W = 520, H = 300, left = 64, right = 150, top = 30, bottom = 44;
  double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
  for (const auto& s : series)
    for (const auto& [x, y] : s.points) {
      if (!std::isfinite(x) || !std::isfinite(y)) continue;
      x0 = std::min(x0, x), x1 = std::max(x1, x), y0 = std::min(y0, y), y1 = std::max(y1, y);
    }
  std::string out = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + num(W) + "\" height=\"" + num(H) +
                    "\" font-family=\"sans-serif\" font-size=\"11\">\n";
  out += "<text x=\"" + num(left) + "\" y=\"18\" font-size=\"13\" font-weight=\"bold\">" + escape(title) + "</text>\n";
  if (!std::isfinite(x0)) return out + "<text x=\"" + num(left) + "\" y=\"60\">no data</text>\n</svg>\n";
  if (x1 == x0) x0 -= 0.5, x1 += 0.5;
  if (y1 == y0) y0 -= 0.5, y1 += 0.5;
  const double pw = W - left - right, ph = H - top - bottom;
  auto px = [&](double x) { return left + (x - x0) / (x1 - x0) * pw; };
  auto py = [&](double y) { return top + (1 - (y - y0) / (y1 - y0)) * ph; };
  out += "<rect x=\"" + num(left) + "\" y=\"" + num(top) + "\" width=\"" + num(pw) + "\" height=\"" + num(ph) +
         "\" fill=\"none\" stroke=\"#888\"/>\n";
  out += "<text x=\"" + num(left) + "\" y=\"" + num(top + ph + 14) + "\">" + tick(x0) + "</text>\n";
  out += "<text x=\"" + num(left + pw) + "\" y=\"" + num(top + ph + 14) + "\" text-anchor=\"end\">" + tick(x1) + "</text>\n";
  out += "<text x=\"" + num(left + pw / 2) + "\" y=\"" + num(H - 8) + "\" text-anchor=\"middle\">" + escape(x_label) + "</text>\n";
  out += "<text x=\"" + num(left - 4) + "\" y=\"" + num(top + ph) + "\" text-anchor=\"end\">" + tick(y0) + "</text>\n";
  out += "<text x=\"" + num(left - 4) + "\" y=\"" + num(top + 8) + "\" text-anchor=\"end\">" + tick(y1) + "</text>\n";
  out += "<text transform=\"translate(12," + num(top + ph / 2) + ") rotate(-90)\" text-anchor=\"middle\">" +
         escape(y_label) + "</text>\n";
  for (size_t i = 0; i < series.size(); ++i) {
    const char* colour = kColours[i % 8];
    std::string points;
    for (const auto& [x, y] : series[i].points)
      if (std::isfinite(x) && std::isfinite(y)) points += num(px(x)) + "," + num(py(y)) + " ";
    out += "<polyline fill=\"none\" stroke=\"" + std::string(colour) + "\" stroke-width=\"1.5\" points=\"" + points + "\"/>\n";
    if (series[i].points.size() <= 60)
      for (const auto& [x, y] : series[i].points)
        if (std::isfinite(x) && std::isfinite(y))
          out += "<circle cx=\"" + num(px(x)) + "\" cy=\"" + num(py(y)) + "\" r=\"2.5\" fill=\"" + colour + "\"/>\n";
    const double ly = top + 12 + 16 * static_cast<double>(i);
    out += "<rect x=\"" + num(left + pw + 10) + "\" y=\"" + num(ly - 8) + "\" width=\"10\" height=\"10\" fill=\"" + colour + "\"/>\n";
    out += "<text x=\"" + num(left + pw + 24) + "\" y=\"" + num(ly) + "\">" + escape(series[i].name) + "</text>\n";
  }
  return out + "</svg>\n";
}

std::string heatmap(const std::string& title, const std::vector<std::string>& row_labels,
                    const std::vector<std::string>& column_labels, const std::vector<std::vector<double>>& values) {
  constexpr double cell_w = 64, cell_h = 18, left = 70, top = 44;
  const double W = left + cell_w * static_cast<double>(column_labels.size()) + 10;
  const double H = top + cell_h * static_cast<double>(row_labels.size()) + 10;
  std::string out = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + num(W) + "\" height=\"" + num(H) +
                    "\" font-family=\"sans-serif\" font-size=\"11\">\n";
  out += "<text x=\"4\" y=\"16\" font-size=\"13\" font-weight=\"bold\">" + escape(title) + "</text>\n";
  for (size_t c = 0; c < column_labels.size(); ++c)
    out += "<text x=\"" + num(left + cell_w * (static_cast<double>(c) + 0.5)) + "\" y=\"" + num(top - 6) +
           "\" text-anchor=\"middle\">" + escape(column_labels[c]) + "</text>\n";
  for (size_t r = 0; r < row_labels.size(); ++r) {
    const double y = top + cell_h * static_cast<double>(r);
    out += "<text x=\"" + num(left - 6) + "\" y=\"" + num(y + 13) + "\" text-anchor=\"end\">" + escape(row_labels[r]) + "</text>\n";
    for (size_t c = 0; c < column_labels.size() && c < values[r].size(); ++c) {
      double v = std::clamp(values[r][c], 0.0, 1.0);
      int shade = static_cast<int>(std::lround(255 - 200 * v));
      char fill[16];
      std::snprintf(fill, sizeof fill, "#%02x%02xff", shade, shade);
      out += "<rect x=\"" + num(left + cell_w * static_cast<double>(c)) + "\" y=\"" + num(y) + "\" width=\"" + num(cell_w - 2) +
             "\" height=\"" + num(cell_h - 2) + "\" fill=\"" + fill + "\"/>\n";
      out += "<text x=\"" + num(left + cell_w * (static_cast<double>(c) + 0.5)) + "\" y=\"" + num(y + 12) +
             "\" text-anchor=\"middle\" fill=\"" + (v > 0.6 ? "#fff" : "#000") + "\">" + num(100 * values[r][c]) + "%</text>\n";
    }
  }
  return out + "</svg>\n";
}

}  // namespace secateur::report::svg
