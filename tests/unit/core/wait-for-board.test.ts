/**
 * waitForBoard: after the reboot, back in as before, or as the configured user when user= took over
 * the login account; a board that answers but refuses every login is reported, not waited out.
 */
import { describe, expect, test } from "bun:test";
import { waitForBoard } from "../../../src/modes/flash.ts";
import { UserError } from "../../../src/errors.ts";
import { AuthError, NoAnswerError } from "../../../src/target/ssh.ts";
import { createFakeTarget } from "../../fakes/fake-target.ts";

const PROBE = `sh -c 'cat /proc/sys/kernel/random/boot_id; hostname; . /etc/os-release 2>/dev/null; echo "$PRETTY_NAME"'`;
const log = { start: () => {}, success: (m: string) => void messages.push(m) };
let messages: string[] = [];
const fast = { pollMs: 5, refusedLimitMs: 60, timeoutMs: 5_000 };

function board(bootId: string) {
  return createFakeTarget({ [PROBE]: { stdout: `${bootId}\nseabird\nDebian GNU/Linux 13 (trixie)\n` } });
}

describe("waitForBoard", () => {
  test("down, then back as the same user with a new boot_id", async () => {
    messages = [];
    let n = 0;
    const tried: (string | undefined)[] = [];
    const r = await waitForBoard(
      async (user) => {
        tried.push(user);
        if (++n < 3) throw new UserError("connect ECONNREFUSED 127.0.0.1:22");
        return board("new-id");
      },
      "old-id",
      log,
      "skipper",
      fast,
    );
    expect(r).toEqual({ bootId: "new-id", hostname: "seabird", os: "Debian GNU/Linux 13 (trixie)", user: undefined });
    // Not reachable yet: the configured user is not tried on a refused connection.
    expect(tried).toEqual([undefined, undefined, undefined]);
    expect(messages[0]).toContain("the board is back");
  });

  test("the old login is refused: logs in as the configured user and says so", async () => {
    messages = [];
    const tried: (string | undefined)[] = [];
    const r = await waitForBoard(
      async (user) => {
        tried.push(user);
        if (user === undefined) throw new AuthError("SSH authentication as pi@board failed.");
        return board("new-id");
      },
      "old-id",
      log,
      "skipper",
      fast,
    );
    expect(r.user).toBe("skipper");
    expect(tried).toEqual([undefined, "skipper"]);
    expect(messages[0]).toContain("(logged in as skipper, the configured user)");
  });

  test("every login refused: a clear error after the limit, not the 15 min timeout", async () => {
    const t0 = performance.now();
    const err = await waitForBoard(
      async (user) => {
        throw new AuthError(`SSH authentication as ${user ?? "pi"}@board failed.`);
      },
      "old-id",
      log,
      "skipper",
      fast,
    ).catch((e) => e);
    expect(err).toBeInstanceOf(UserError);
    expect(err.message).toContain("refuses every login");
    expect(err.message).toContain("skipper@board");
    expect(err.hint).toContain("written and verified");
    expect(performance.now() - t0).toBeLessThan(2_000);
  });

  test("polls have short limits (a NAT holding a connection to a booting board); after 12 unanswered in a row, none", async () => {
    const seen: (number | undefined)[] = [];
    let n = 0;
    const r = await waitForBoard(
      async (_user, limits) => {
        seen.push(limits?.bannerTimeoutMs);
        n++;
        if (n === 3) throw new UserError("connect ECONNREFUSED 127.0.0.1:22"); // an answer: the count starts again
        if (n < 17) throw new NoAnswerError("127.0.0.1 accepted the connection but sent nothing in 5 s.");
        return board("new-id");
      },
      "old-id",
      log,
      undefined,
      fast,
    );
    expect(r.bootId).toBe("new-id");
    const quick = 3_000;
    // Attempts 1-2 unanswered, 3 refused, 4-15 unanswered (12 in a row), then 16 and 17 without limits.
    expect(seen).toEqual([...Array(15).fill(quick), undefined, undefined]);
  });

  test("same boot_id (not rebooted yet) keeps waiting", async () => {
    let n = 0;
    const r = await waitForBoard(async () => board(++n < 3 ? "old-id" : "new-id"), "old-id", log, undefined, fast);
    expect(r.bootId).toBe("new-id");
    expect(n).toBe(3);
  });

  test("onBack runs on the login that saw the new boot, before it is closed; an old boot never reaches it", async () => {
    const events: string[] = [];
    const ids = new Map<object, string>();
    let n = 0;
    const r = await waitForBoard(
      async () => {
        const id = ++n < 2 ? "old-id" : "new-id";
        const t = board(id);
        t.close = async () => void events.push(`close ${id}`);
        ids.set(t, id);
        return t;
      },
      "old-id",
      log,
      undefined,
      { ...fast, onBack: async (t) => void events.push(`onBack ${ids.get(t)}`) },
    );
    expect(r.bootId).toBe("new-id");
    expect(events).toEqual(["close old-id", "onBack new-id", "close new-id"]);
  });
});
