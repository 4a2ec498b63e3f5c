# The registry's disk full (docs/registrations.md, section 4): registrations
# are refused with 507 and a JSON error that says so, logged at crit once
# per episode (not per request) in all workers; reads, deliveries, the
# removal of gone handles and deletes go on; registrations are taken again
# by themselves when the disk has room, and every registration acknowledged
# with 2xx is there afterwards, across a restart too.
#
# The registry lives on a small tmpfs this test mounts (root only); the
# disk fills with registrations first, then with a file.  Then on a small
# ext2 image (a loop device), which has no fallocate(): the room kept for
# deletes is written with zeros instead.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use File::Path qw(make_path);
use AcsTest::Util;
use AcsTest::Reg;
use AcsTest::Dispatch;

my $t = AcsTest::Dispatch->new('265-registry-disk-full');
my $srv = $t->srv;
my $nh = $t->nh;
my ($dir, $port, $ca) = ($t->dir, $nh->port, $nh->ca);
my $disk = $srv->root . '/disk';
make_path($disk);

plan skip_all => 'mounting the small tmpfs this test needs takes root'
    unless $> == 0;
my $out = `mount -t tmpfs -o size=2m tmpfs $disk 2>&1`;
plan skip_all => "cannot mount a 2m tmpfs on $disk: $out" if $?;

my @mounted = ($disk);

sub unmount {
    return unless @mounted;
    $srv->stop;
    for my $m (reverse @mounted) {
        system('umount', $m) == 0 or system('umount', '-l', $m);
    }
    @mounted = ();
}

END { unmount() }
$SIG{INT} = $SIG{TERM} = sub { unmount(); exit 1 };

sub conf {
    my ($registry) = @_;
    $srv->write_conf(workers => 2, http => <<"HTTP", server => <<"SERVER");
    acs_notify_registry $registry max_size=64m;
    acs_notify_hub main connection_string=file:$dir/nh.conn hub=acs-push connect_to=127.0.0.1:$port ca_file=$ca timeout=2s;
HTTP
        location = /eg { acs_notify_eventgrid hub=main; }
        location /acs/ {
            acs_notify_registrations;
            acs_notify_hmac_key $AcsTest::Reg::KEY;
        }
SERVER
}

sub call {
    my ($method, $path, $body) = @_;
    my %h = map { /^([^:]+): (.*)$/ ? ($1 => $2) : () }
            split /\n/, signed_headers($method, $path, $body // '');
    return $srv->request($method => $path, $body // '', \%h);
}

my $BIG = reg_body(platform => 'fcmv1', handle => 'f' x 1500);
my %acked;      # path => 1, every registration answered 2xx
my %answers;    # status => count, over the whole run

sub put {
    my ($path) = @_;
    my ($st, $h, $b) = call(PUT => $path, $BIG);
    $answers{$st}++;
    $acked{$path} = 1 if $st == 200 || $st == 201;
    return ($st, $h, $b);
}

# PUT new registrations until one is refused: (its answer, how many 2xx)
sub fill {
    my ($name) = @_;
    my $n = 0;
    for my $i (1 .. 5000) {
        my ($st, $h, $b) = put("/acs/users/$name-$i/devices/d1");
        return ($st, $h, $b, $n) unless $st == 201;
        $n++;
    }
    return (0, {}, 'never refused', $n);
}

sub crits { return scalar grep { /\[crit\]/ } split /\n/, $srv->whole_log }

sub fill_file {
    my ($path) = @_;
    open my $fh, '>', $path or die "$path: $!";
    my $chunk = "\0" x 65536;
    1 while syswrite($fh, $chunk);
    close $fh;
}

conf("$disk/registry");
$srv->start;

my $BOB = '8:acs:109f0644-b956-4cd9-87b1-71024f6e2f44_00000008-578d-7d05-83fe-084822000f6d';
my $GONE = '0410' . 'e' x 60;
is($srv->register($BOB, 'iphone', platform => 'apns', handle => 'b0b0' x 16), 201,
   'Bob registers an iPhone');
is($srv->register($BOB, 'old', platform => 'apns', handle => $GONE), 201,
   '... and a phone Notification Hubs will report gone');

# --- the registrations fill the disk

my ($st, $h, $b, $n) = fill('user');
ok($n > 50, "the 2m disk took $n registrations");
is($st, 507, 'then a registration is refused with 507');
is($h->{'content-type'}, 'application/json', '... in JSON');
like($b, qr/^\{"error":\{"code":"DiskFull","message":"[^"]*disk is full[^"]*"\}\}$/,
     '... whose code and message say the disk is full');

for my $i (1 .. 10) {
    ($st) = put("/acs/users/more-$i/devices/d1");
    last if $st != 507;
}
is($st, 507, 'ten more registrations: 507 each');
($st) = put('/acs/users/user-1/devices/d1');
is($st, 507, 'replacing one: 507');

my $log = $srv->new_log;
my @crit = grep { /\[crit\]/ } split /\n/, $log;
is(scalar @crit, 1, 'one [crit] for the episode, not one per request')
    or diag join "\n", @crit;
like($crit[0] // '', qr/acs_notify_registry: no space left on the disk of "\Q$disk\E\/registry"; registrations are refused with 507/,
     '... that names the registry');

# --- reads, deliveries, gone handles and deletes go on

($st, undef, $b) = call(GET => '/acs/users/user-1/devices/d1');
is($st, 200, 'a registration is read');
($st, undef, $b) = call(GET => '/acs/users/' . AcsTest::Server::uri_escape($BOB) . '/devices');
like($b, qr/"deviceId":"iphone"/, "a user's devices are listed");

my $n0 = $t->mark;
($st) = $t->deliver('/eg', fixture('eg-chat-message-received.json'));
is($st, 200, 'a delivery is pushed');
ok(grep({ $_->{handle} eq 'b0b0' x 16 && $_->{status} == 201 } $t->since($n0)),
   '... to the iPhone');

my $listed;
for (1 .. 100) {
    (undef, undef, $listed) = call(GET => '/acs/users/' . AcsTest::Server::uri_escape($BOB) . '/devices');
    last unless $listed =~ /"deviceId":"old"/;
    select undef, undef, undef, 0.05;
}
unlike($listed, qr/"deviceId":"old"/, 'the handle reported gone is removed from the registry');

my %del;
for my $i (1 .. 20) {
    ($st) = call(DELETE => "/acs/users/user-$i");
    $del{$st}++;
    delete $acked{"/acs/users/user-$i/devices/d1"} if $st == 204;
}
is(join(',', map { "$_=$del{$_}" } sort keys %del), '204=20', 'twenty users are deleted: 204 each');

($st) = put('/acs/users/late/devices/d1');
is($st, 507, 'while the disk stays full, registrations are still refused');
is(scalar(grep { /\[crit\]/ } split /\n/, $srv->new_log), 0, '... with no new [crit]');

# --- room again: registrations are taken by themselves

system('mount', '-o', 'remount,size=8m', $disk) == 0 or die 'remount failed';
($st) = put('/acs/users/late/devices/d1');
is($st, 201, 'the disk grown: a registration is taken again');
like($srv->new_log, qr/\[notice\].*acs_notify_registry: registrations are written again/,
     '... and the end of the episode is logged');

# --- a second episode: a file fills the disk, then is removed

fill_file("$disk/filler");
($st, $h, $b, $n) = fill('again');
is($st, 507, "a file fills the disk: 507 (after $n more)");
is(crits(), 2, 'a second [crit] for the second episode');
unlink "$disk/filler";
($st) = put('/acs/users/after-filler/devices/d1');
is($st, 201, 'the file removed: a registration is taken again');

# --- nothing acknowledged was lost

is(join(',', grep { $_ != 200 && $_ != 201 && $_ != 507 } sort keys %answers), '',
   'registrations were answered 2xx or 507, never 500');

sub missing {
    my @missing;
    for my $path (sort keys %acked) {
        my ($s) = call(GET => $path);
        push @missing, "$path: $s" if $s != 200;
    }
    return @missing;
}

my @missing = missing();
is(scalar @missing, 0, scalar(keys %acked) . ' registrations acknowledged, every one is there')
    or diag join "\n", @missing[0 .. ($#missing < 9 ? $#missing : 9)];

$srv->stop;
$srv->start;
@missing = missing();
is(scalar @missing, 0, '... and after a restart')
    or diag join "\n", @missing[0 .. ($#missing < 9 ? $#missing : 9)];

# --- a filesystem that cannot allocate ahead: ext2

SKIP: {
    my $image = $srv->root . '/ext2.img';
    my $disk2 = $srv->root . '/ext2';
    make_path($disk2);
    system("dd if=/dev/zero of=$image bs=1k count=2048 2>/dev/null") == 0
        && system("mkfs.ext2 -q -F $image >/dev/null 2>&1") == 0
        or skip 'mkfs.ext2 is needed for the ext2 image', 10;
    $out = `mount -o loop $image $disk2 2>&1`;
    skip "cannot loop-mount an ext2 image: $out", 10 if $?;
    push @mounted, $disk2;

    $srv->stop;
    conf("$disk2/registry");
    $srv->start;
    $srv->new_log;
    %acked = ();

    open my $fh, '>', "$disk2/filler" or die $!;
    syswrite($fh, "\0" x 65536) for 1 .. 4;      # 256k to free later
    close $fh;

    ($st, $h, $b, $n) = fill('ext2');
    ok($n > 50, "the ext2 disk took $n registrations");
    is($st, 507, 'then a registration is refused with 507');
    like($b, qr/^\{"error":\{"code":"DiskFull",/, '... DiskFull');
    for my $i (1 .. 5) {
        ($st) = put("/acs/users/ext2-more-$i/devices/d1");
        last if $st != 507;
    }
    is($st, 507, 'five more: 507 each');
    my @c = grep { /\[crit\]/ } split /\n/, $srv->new_log;
    is(scalar @c, 1, 'one [crit]') or diag join "\n", @c;
    like($c[0] // '', qr/no space left on the disk of "\Q$disk2\E\/registry"/, '... for the disk');

    ($st) = call(GET => '/acs/users/ext2-1/devices/d1');
    is($st, 200, 'a registration is read');

    my %d;
    for my $i (1 .. 20) {
        ($st) = call(DELETE => "/acs/users/ext2-$i");
        $d{$st}++;
        delete $acked{"/acs/users/ext2-$i/devices/d1"} if $st == 204;
    }
    is(join(',', map { "$_=$d{$_}" } sort keys %d), '204=20', 'twenty users are deleted: 204 each');

    unlink "$disk2/filler";
    ($st) = put('/acs/users/ext2-late/devices/d1');
    is($st, 201, 'room again: a registration is taken');

    @missing = missing();
    is(scalar @missing, 0, scalar(keys %acked) . ' registrations acknowledged on ext2, every one is there')
        or diag join "\n", @missing[0 .. ($#missing < 9 ? $#missing : 9)];
}

$srv->stop;
my @bad = grep { !/no space left on the disk/ } $srv->bad_lines;
is(join("\n", @bad), '', 'no alert, crit or emerg but the episodes');

unmount();
undef $t;
done_testing();
