using System.Runtime.CompilerServices;
using LoyaltyLedger.Organizations;
using LoyaltyLedger.Programs;

namespace LoyaltyLedger.Tests.Server;

/// <summary>
/// The catalog cache's loads: the callers that miss an API key or an organization's program list at
/// the same time (every second, when the entry expires under load) wait for one read of it, not one
/// each; a load that fails fails its waiters only, and the next miss reads again; a caller that comes
/// after this process revoked the key does not take the answer of a read begun before.
/// </summary>
public sealed class CatalogCacheLoadTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(30);

    /// <summary>
    /// A key's read that waits for <paramref name="release"/> (the database's answer), counting itself in
    /// <paramref name="reads"/>; as the server's own, it notes the time before it reads.
    /// </summary>
    private static Func<Task<CachedKey>> KeyRead(CatalogCache cache, StrongBox<int> reads, Task release, long orgId) => async () =>
    {
        Interlocked.Increment(ref reads.Value);
        var loadedAt = CatalogCache.Now();
        await release;
        var key = new CachedKey(orgId, "hash", "Admin");
        cache.SetKey("key-1", key, loadedAt);
        return key;
    };

    [Fact]
    public async Task callers_that_miss_a_key_at_once_wait_for_one_read_of_it()
    {
        var cache = new CatalogCache();
        var reads = new StrongBox<int>();
        var release = new TaskCompletionSource();
        var read = KeyRead(cache, reads, release.Task, orgId: 7);

        // Each call runs until the read's first wait, so all 20 are waiting before it is let go.
        var waiting = Enumerable.Range(0, 20).Select(_ => cache.KeyAsync("key-1", read)).ToList();
        release.SetResult();

        (await Task.WhenAll(waiting).WaitAsync(Bound)).ShouldAllBe(key => key.OrgId == 7);
        reads.Value.ShouldBe(1);
    }

    [Fact]
    public async Task a_caller_after_this_process_revoked_a_key_does_not_join_a_read_begun_before()
    {
        var cache = new CatalogCache();
        var reads = new StrongBox<int>();
        var before = new TaskCompletionSource();
        var early = cache.KeyAsync("key-1", KeyRead(cache, reads, before.Task, orgId: 7));

        cache.InvalidateKey("key-1");
        var after = cache.KeyAsync("key-1", KeyRead(cache, reads, Task.CompletedTask, orgId: 8));

        (await after.WaitAsync(Bound)).OrgId.ShouldBe(8);
        reads.Value.ShouldBe(2);
        before.SetResult();
        (await early.WaitAsync(Bound)).OrgId.ShouldBe(7);
    }

    [Fact]
    public async Task callers_that_miss_a_program_list_at_once_wait_for_one_read_and_a_failed_read_is_not_kept()
    {
        var cache = new CatalogCache();
        var reads = 0;
        var release = new TaskCompletionSource();
        async Task<IReadOnlyList<LoyaltyProgram>> FailingAsync()
        {
            Interlocked.Increment(ref reads);
            await release.Task;
            throw new TimeoutException("the database did not answer");
        }

        var waiting = Enumerable.Range(0, 20).Select(_ => cache.ProgramsAsync(3, FailingAsync)).ToList();
        release.SetResult();
        foreach (var caller in waiting) await Should.ThrowAsync<TimeoutException>(caller.WaitAsync(Bound));
        reads.ShouldBe(1);

        IReadOnlyList<LoyaltyProgram> programs = [new LoyaltyProgram { ProgramId = 1, Name = "Main" }];
        (await cache.ProgramsAsync(3, () =>
        {
            Interlocked.Increment(ref reads);
            cache.SetPrograms(3, programs, CatalogCache.Now());
            return Task.FromResult(programs);
        })).ShouldBe(programs);
        reads.ShouldBe(2, "the failed read was not kept: the next miss read again");
    }
}
