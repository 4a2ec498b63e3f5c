# A full registry: registrations are refused with 507 while the map still
# has the room that deletes and the expiry sweep need (LMDB copies every page
# it changes, deletes included), so those always commit; and a failure of
# the registry is answered in JSON, never with nginx's HTML page.  A full
# disk (507, not 500) is t/265.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use Time::HiRes qw(sleep);
use AcsTest::Reg;
use AcsTest::Server;

my $srv = AcsTest::Server->new('260-registry-full');
my $root = $srv->root;

sub conf {
    my ($registry) = @_;
    $srv->write_conf(http => "acs_notify_registry $registry;", server => <<"SERVER");
        location /acs/ {
            acs_notify_registrations;
            acs_notify_hmac_key $AcsTest::Reg::KEY;
        }
SERVER
}

sub call {
    my ($method, $path, $body) = @_;
    my %h = map { /^([^:]+): (.*)$/ ? ($1 => $2) : () }
            split /\n/, AcsTest::Reg::signed_headers($method, $path, $body // '');
    return $srv->request($method => $path, $body // '', \%h);
}

# PUT $make->($i) for i = 1, 2, ... until 507; the count of 201s
sub fill {
    my ($make, $body) = @_;
    my $n = 0;
    for my $i (1 .. 20000) {
        my ($st, undef, $b) = call(PUT => $make->($i), $body);
        if ($st == 507) {
            like($b, qr/^\{"error":\{"code":"InsufficientStorage",/, "507 after $n registrations");
            return $n;
        }
        $n++ if $st == 201;
    }
    fail('the registry never filled up');
    return $n;
}

# the lines at crit or alert that are not "database full"
sub bad_lines {
    return join '', grep { /\[(crit|alert|emerg)\]/ && !/database full, raise max_size/ }
        split /^/, $srv->new_log;
}

my $small = reg_body(platform => 'fcmv1', handle => 'f' x 200);

# --- many users, one device each: every user deleted, one by one

conf("$root/users max_size=1m");
$srv->start;

my $n = fill(sub { "/acs/users/user-$_[0]/devices/d1" }, $small);
ok($n > 1000, "the 1m registry took $n small registrations");

my %seen;
for my $i (1 .. $n) {
    my ($st, $h, $b) = call(DELETE => "/acs/users/user-$i");
    $seen{$st}++;
    diag "DELETE user-$i: $st $b" if $st != 204 && $seen{$st} == 1;
}
is(join(',', map { "$_=$seen{$_}" } sort keys %seen), "204=$n", 'every user of the full registry is deleted with 204');
is(bad_lines(), '', 'no crit but "database full"');

my ($st) = call(PUT => '/acs/users/again/devices/d1', $small);
is($st, 201, 'registrations are taken again after the deletes');

# --- one user with many devices: deleted whole

$srv->stop;
conf("$root/devices max_size=1m max_devices=1000");
$srv->start;
$srv->new_log;

$n = fill(sub { "/acs/users/crowded/devices/d$_[0]" },
          reg_body(platform => 'fcmv1', handle => 'f' x 1500));
ok($n > 100, "one user has $n devices");
($st) = call(DELETE => '/acs/users/crowded');
is($st, 204, 'the user and all its devices are deleted');
(undef, undef, my $b) = call(GET => '/acs/users/crowded/devices');
is($b, '{"value":[]}', 'none is left');
is(bad_lines(), '', 'no crit but "database full"');

# --- expiry: the sweep purges a full registry

$srv->stop;
# large records fill it in a few hundred requests, well within their TTL
conf("$root/expiry max_size=1m ttl=3s");
$srv->start;
$srv->new_log;

$n = fill(sub { "/acs/users/short-$_[0]/devices/d1" },
          reg_body(platform => 'fcmv1', handle => 'f' x 1500));
my $purged = 0;
for (1 .. 60) {
    sleep 0.25;
    $purged += $_ for $srv->new_log =~ /purged (\d+) expired registrations/g;
    last if $purged >= $n;
}
is($purged, $n, "the sweep purged all $n expired registrations of the full registry");
is(bad_lines(), '', 'no crit but "database full"');
($st) = call(PUT => '/acs/users/again/devices/d1', $small);
is($st, 201, 'registrations are taken again after the sweep');

$srv->stop;

# --- a registry whose disk fails answers in JSON
#
# A thin-provisioned disk: an ext2 image that believes it has 16m, in a
# sparse file on a 600k tmpfs.  The registry's writes fit in the
# filesystem but not on the device: LMDB's commit fails, first with ENOSPC
# (507, the disk full: t/265), then with EIO (500).

my @mounted;

sub unmount {
    $srv->stop;
    for my $m (reverse @mounted) {
        system('umount', $m) == 0 or system('umount', '-l', $m);
    }
    @mounted = ();
}

END { unmount() if @mounted }

SKIP: {
    my $back = "$root/thin-back";
    my $disk = "$root/thin-disk";
    mkdir $back;
    mkdir $disk;
    skip 'mounting a tmpfs and a loop device needs root', 5 unless $> == 0;
    my $out = `mount -t tmpfs -o size=600k tmpfs $back 2>&1`;
    skip "cannot mount a tmpfs: $out", 5 if $?;
    push @mounted, $back;
    $out = `truncate -s 16m $back/img && mkfs.ext2 -q -F $back/img 2>&1 && mount -o loop $back/img $disk 2>&1`;
    if ($?) {
        unmount();
        skip "cannot loop-mount an ext2 image: $out", 5;
    }
    push @mounted, $disk;

    conf("$disk max_size=8m");
    $srv->start;
    $srv->new_log;

    my (%seen, @wrong);
    for my $i (1 .. 100) {
        my ($st, $h, $b) = call(PUT => "/acs/users/disk-$i/devices/d1",
                                reg_body(platform => 'fcmv1', handle => 'f' x 4000));
        $seen{$st}++;
        next if $st == 201;
        push @wrong, "$st $b" unless ($h->{'content-type'} // '') eq 'application/json'
            && ($st == 500 && $b =~ /^\{"error":\{"code":"InternalError","message":"[^"]+"\}\}$/
                || $st == 507 && $b =~ /^\{"error":\{"code":"DiskFull","message":"[^"]+"\}\}$/);
    }
    ok(!grep({ $_ != 201 && $_ != 500 && $_ != 507 } keys %seen),
       'a failing disk: 201, 500 or 507 (' . join(',', map { "$_=$seen{$_}" } sort keys %seen) . ')');
    ok($seen{500}, 'a write the failing disk cannot take: 500');
    is(join("\n", @wrong), '', '... each refusal a JSON error object of its status');
    my $log = $srv->new_log;
    # the commit that met EIO, or the reads after LMDB gave the environment up
    like($log, qr/\[crit\].*acs_notify_registry: (mdb_txn_commit\(\)|put|read transaction) failed: (Input\/output error|MDB_PANIC)/,
         'the failure is logged at crit');
    ok(!grep({ /\[alert\]|\[emerg\]/ } split /\n/, $log), 'no alert or emerg');

    unmount();
}

done_testing();
