#include <iostream>
int main() { std::cout << "secateur\n"; return 0; }
