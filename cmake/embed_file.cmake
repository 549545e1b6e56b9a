# cmake -DIN=file -DOUT=file.c -P embed_file.cmake: IN as a C byte array
# (ci_webui_page, ci_webui_page_len), NUL-terminated.
file(READ ${IN} hex HEX)
string(LENGTH "${hex}" n)
math(EXPR len "${n} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "((0x..,){16})" "\\1\n" bytes "${bytes}")
file(WRITE ${OUT} "/* Generated from ${IN} by cmake/embed_file.cmake. */\n#include <stddef.h>\n"
  "const unsigned char ci_webui_page[] = {\n${bytes}0x00};\nconst size_t ci_webui_page_len = ${len};\n")
