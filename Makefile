# Front door. `make` builds ./build/cinfer; `make test` runs the suite;
# `make asan` builds and tests with ASan+UBSan in build-asan/.
BUILD ?= build
GEN := $(shell command -v ninja >/dev/null 2>&1 && echo "-G Ninja")
CMAKE_FLAGS ?=
JOBS ?= $(shell nproc)

.PHONY: all test asan fuzz format format-check clean

all: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) $(GEN) $(CMAKE_FLAGS)

test: all
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

asan:
	$(MAKE) test BUILD=build-asan CMAKE_FLAGS="-DCMAKE_BUILD_TYPE=Debug -DCINFER_SANITIZE=ON -DCINFER_CUDA=OFF $(CMAKE_FLAGS)"

fuzz:
	cmake -S . -B build-fuzz $(GEN) -DCMAKE_C_COMPILER=clang -DCINFER_FUZZ=ON -DCINFER_CUDA=OFF \
	  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCINFER_SANITIZE=ON
	cmake --build build-fuzz -j $(JOBS)

# C sources and headers; CUDA files are left as written (clang-format 14
# mangles templated kernel launches).
format:
	clang-format -i $$(git ls-files '*.c' '*.h')

format-check:
	clang-format --dry-run --Werror $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build build-asan build-fuzz
