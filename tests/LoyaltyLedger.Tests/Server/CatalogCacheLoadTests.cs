using LoyaltyLedger.Organizations;
using LoyaltyLedger.Programs;

namespace LoyaltyLedger.Tests.Server;

/// <summary>
/// The catalog cache's loads: the callers that miss an API key or an organization's program list at
/// the same time (every second, when the entry expires under load) wait for one read of it, not one
/// each; a load that fails fails its waiters only, and the next miss reads again.
/// </summary>
public sealed class CatalogCacheLoadTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task callers_that_miss_a_key_at_once_wait_for_one_read_of_it()
    {
        var cache = new CatalogCache();
        var reads = 0;
        var release = new TaskCompletionSource();
        async Task<CachedKey> ReadAsync()
        {
            Interlocked.Increment(ref reads);
            var loadedAt = CatalogCache.Now();
            await release.Task;
            var key = new CachedKey(7, "hash", "Admin");
            cache.SetKey("key-1", key, loadedAt);
            return key;
        }

        var waiting = Enumerable.Range(0, 20).Select(_ => Task.Run(() => cache.KeyAsync("key-1", ReadAsync))).ToList();
        while (reads == 0) await Task.Delay(5);
        release.SetResult();

        (await Task.WhenAll(waiting).WaitAsync(Bound)).ShouldAllBe(key => key.OrgId == 7);
        reads.ShouldBe(1);
        (await cache.KeyAsync("key-1", ReadAsync)).OrgId.ShouldBe(7);
        reads.ShouldBe(1, "a key in the cache is not read again");
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

        var waiting = Enumerable.Range(0, 20).Select(_ => Task.Run(() => cache.ProgramsAsync(3, FailingAsync))).ToList();
        while (reads == 0) await Task.Delay(5);
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
