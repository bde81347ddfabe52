package org.adpc.core;

/** A StageRunner for tests: reports itself as a 2-thread fp32 "fake" runtime; subclasses
 *  decide what each stage returns and how long it takes. */
abstract class FakeRunner implements StageRunner {
    @Override
    public String name() {
        return "fake";
    }

    @Override
    public String precision() {
        return "fp32";
    }

    @Override
    public int threads() {
        return 2;
    }

    @Override
    public void close() {
    }
}
